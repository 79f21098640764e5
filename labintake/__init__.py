"""labintake: laboratory order intake and code verification."""

__version__ = "0.1.0"
