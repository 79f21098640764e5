"""Packaging beyond pyproject.toml: the repository keeps the code tables and the interface
definitions as top-level folders; the wheel carries them inside the package
(labintake/code_tables/, labintake/interfaces/), where labintake.resources finds them.

Folders without an __init__.py are packages too (namespace discovery): migrations/ is loaded
by path by Alembic, and templates, static files, fonts and table folders hold data only."""

from setuptools import find_namespace_packages, setup

SHIPPED_FOLDERS = {"labintake.code_tables": "code_tables", "labintake.interfaces": "interfaces"}

setup(
    packages=[
        *find_namespace_packages(include=["labintake*"]),
        *SHIPPED_FOLDERS,
        *(
            f"{package}.{sub}"
            for package, folder in SHIPPED_FOLDERS.items()
            for sub in find_namespace_packages(where=folder)
        ),
    ],
    package_dir=SHIPPED_FOLDERS,
)
