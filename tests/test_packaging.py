"""The wheel carries the code tables and the interface definitions: installed anywhere, the
service finds them with no folder set and from any working directory."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SOURCES = ("pyproject.toml", "setup.py", "README.md", "LICENSE", "labintake", "code_tables")
SOURCES += ("interfaces",)
SKIP = shutil.ignore_patterns("__pycache__", "*.pyc")
pytestmark = pytest.mark.slow


def _run(args: list[str], cwd: Path, site: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LABINTAKE_")}
    env["PYTHONPATH"] = str(site)  # the installed copy, not the checkout
    env["LABINTAKE_DEVELOPMENT"] = "1"
    return subprocess.run(
        [sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The project built as a wheel and installed into a folder of its own."""
    work = tmp_path_factory.mktemp("wheel")
    # Built from a copy of what the wheel is made of: a build in the checkout would leave
    # build/ there, whose stale files a later wheel could pick up.
    source = work / "source"
    for name in SOURCES:
        if (REPO / name).is_dir():
            shutil.copytree(REPO / name, source / name, ignore=SKIP)
        else:
            source.mkdir(exist_ok=True)
            shutil.copy2(REPO / name, source / name)
    pip = [sys.executable, "-m", "pip"]
    subprocess.run(
        [*pip, "wheel", "--no-deps", "--quiet", "-w", str(work), str(source)],
        check=True,
        timeout=600,
    )
    (wheel,) = work.glob("labintake-*.whl")
    site = work / "site"
    install = [*pip, "install", "--no-deps", "--quiet", "--target", str(site), str(wheel)]
    subprocess.run(install, check=True, timeout=600)
    return site


def test_codes_lookup_works_from_any_directory(installed: Path, tmp_path: Path) -> None:
    done = _run(["-m", "labintake", "codes", "lookup", "E11.9"], tmp_path, installed)
    assert done.returncode == 0, done.stderr
    assert "Type 2 diabetes mellitus without complications" in done.stdout


def test_the_shipped_folders_are_inside_the_installed_package(
    installed: Path, tmp_path: Path
) -> None:
    script = (
        "import labintake\n"
        "from labintake.config import Settings\n"
        "from labintake.preflight import check_code_tables, check_interfaces\n"
        "from labintake.interfaces import load_interfaces\n"
        "s = Settings()\n"
        "check_code_tables(s); check_interfaces(s)\n"
        "print(labintake.__file__); print(s.code_tables_dir); print(s.interfaces_dir)\n"
        "print(len(load_interfaces(s.interfaces_dir)))\n"
    )
    done = _run(["-c", script], tmp_path, installed)
    assert done.returncode == 0, done.stderr
    package, tables, interfaces, senders = done.stdout.split()
    package_dir = Path(package).parent
    assert package_dir.is_relative_to(installed)
    assert Path(tables) == package_dir / "code_tables"
    assert Path(interfaces) == package_dir / "interfaces"
    shipped = [p for p in (REPO / "interfaces").iterdir() if (p / "interface.toml").is_file()]
    assert int(senders) == len(shipped)
    for folder in ("code_tables", "interfaces"):
        in_repo = {p.relative_to(REPO / folder) for p in (REPO / folder).rglob("*") if p.is_file()}
        in_wheel = {
            p.relative_to(package_dir / folder)
            for p in (package_dir / folder).rglob("*")
            if p.is_file() and "__pycache__" not in p.parts
        }
        assert in_wheel == in_repo, folder


def test_an_import_into_the_installed_copy_is_refused(installed: Path, tmp_path: Path) -> None:
    sample = tmp_path / "codes.txt"
    sample.write_text("E11.9 Type 2 diabetes mellitus without complications\n")
    done = _run(["-m", "labintake", "codes", "import", "icd10cm", str(sample)], tmp_path, installed)
    assert done.returncode == 2
    assert "LABINTAKE_CODE_TABLES_DIR" in done.stderr
    assert not list((installed / "labintake" / "code_tables").rglob("*codes.txt*"))


def test_every_file_of_the_package_is_installed(installed: Path) -> None:
    """Files that are not Python modules of an import package (Alembic's env.py and versions,
    templates, fonts) are package data: one left out of the wheel breaks only the installed
    service, never the checkout."""
    tracked = subprocess.run(
        ["git", "ls-files", "labintake"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.split()
    missing = [name for name in tracked if not (installed / name).is_file()]
    assert tracked
    assert missing == []


def test_the_installed_copy_migrates_a_new_database(installed: Path, tmp_path: Path) -> None:
    database = tmp_path / "fresh.db"
    env = {k: v for k, v in os.environ.items() if not k.startswith("LABINTAKE_")}
    env["PYTHONPATH"] = str(installed)
    env["LABINTAKE_DEVELOPMENT"] = "1"
    env["LABINTAKE_DATABASE_URL"] = f"sqlite:///{database}"
    done = subprocess.run(
        [sys.executable, "-m", "labintake", "migrate"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    tables = subprocess.run(
        [
            sys.executable,
            "-c",
            f"import sqlite3; c = sqlite3.connect({str(database)!r}); "
            "print(c.execute('select version_num from alembic_version').fetchone()[0])",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    heads = sorted(
        p.name.split("_")[0] for p in (REPO / "labintake/migrations/versions").glob("0*.py")
    )
    assert tables == heads[-1]
