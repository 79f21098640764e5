"""The code tables and interface definitions the package ships, found with importlib.resources.

In the repository they are the top-level folders `code_tables/` and `interfaces/`; a wheel
carries them inside the package as `labintake/code_tables/` and `labintake/interfaces/`
(setup.py maps the folders in). Either way they are the default when no folder is set
(`LABINTAKE_CODE_TABLES_DIR`, `LABINTAKE_INTERFACES_DIR`), so an installed package serves
from any working directory.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

CODE_TABLES = "code_tables"
INTERFACES = "interfaces"
_CHECKOUT = Path(__file__).resolve().parent.parent  # the repository, when run from source


def _packaged(name: str) -> Path | None:
    """The folder inside the installed package, or None when running from a checkout."""
    packaged = files("labintake") / name
    return Path(str(packaged)) if packaged.is_dir() else None


def shipped_folder(name: str) -> Path:
    """The shipped `name` folder (CODE_TABLES or INTERFACES): inside the installed package,
    else the repository's top-level folder."""
    return _packaged(name) or _CHECKOUT / name


def is_installed_copy(folder: Path) -> bool:
    """Whether `folder` is the copy inside an installed package (not to be written to: an
    upgrade replaces it)."""
    packaged = _packaged(CODE_TABLES), _packaged(INTERFACES)
    return any(p is not None and folder.resolve() == p.resolve() for p in packaged)


def default_code_tables() -> Path:
    return shipped_folder(CODE_TABLES)


def default_interfaces() -> Path:
    return shipped_folder(INTERFACES)
