"""Packaging beyond pyproject.toml: the repository keeps the code tables and the interface
definitions as top-level folders; the wheel carries them inside the package
(labintake/code_tables/, labintake/interfaces/), where labintake.resources finds them."""

from setuptools import find_packages, setup

SHIPPED_FOLDERS = {"labintake.code_tables": "code_tables", "labintake.interfaces": "interfaces"}

setup(
    packages=[*find_packages(include=["labintake*"]), *SHIPPED_FOLDERS],
    package_dir=SHIPPED_FOLDERS,
)
