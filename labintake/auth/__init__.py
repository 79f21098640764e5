"""Who may do what: users with roles, password login with lockout, web sessions, API tokens."""

from labintake.auth.roles import Role

__all__ = ["Role"]
