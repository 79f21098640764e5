"""Shared fixtures: real databases (SQLite file and PostgreSQL), migrated with Alembic.

Every test that takes `database_url` (or `engine`, `settings`) runs once per backend.
Backends come from `LABINTAKE_TEST_BACKENDS` (default "sqlite,postgresql"); PostgreSQL is
reached at `LABINTAKE_TEST_PG` (default postgresql+psycopg://postgres@127.0.0.1:5432/postgres).
A test database is created per test session (and per xdist worker) and dropped at the end.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError
from sqlmodel import SQLModel

import labintake.models  # noqa: F401
from benchmarks.databases import fresh_postgresql_database
from labintake.config import Settings
from labintake.db import make_engine, migrate
from labintake.intake.journal import journal_path

REPO = Path(__file__).resolve().parent.parent
BACKENDS = [
    b.strip()
    for b in os.environ.get("LABINTAKE_TEST_BACKENDS", "sqlite,postgresql").split(",")
    if b.strip()
]


def _worker() -> str:
    return os.environ.get("PYTEST_XDIST_WORKER", "main")


@pytest.fixture(scope="session")
def sqlite_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("db") / "labintake.sqlite3"
    url = f"sqlite:///{path}"
    migrate(url)
    return url


@pytest.fixture(scope="session")
def postgresql_url() -> Iterator[str]:
    with fresh_postgresql_database(f"labintake_test_{_worker()}") as url:
        yield url


def _empty_all_tables(engine: Engine) -> None:
    tables = [t.name for t in reversed(SQLModel.metadata.sorted_tables)]
    if engine.dialect.name != "postgresql":
        with engine.begin() as conn:
            for name in tables:
                conn.execute(text(f"DELETE FROM {name}"))
        # What a killed service left in intake's journal would be moved in by the next one.
        journal = journal_path(engine)
        if journal is not None and journal.exists():
            journal_engine = make_engine(f"sqlite:///{journal}")
            try:
                with journal_engine.begin() as conn:
                    conn.execute(text("DROP TABLE IF EXISTS inbound_message"))
            finally:
                journal_engine.dispose()
        return
    # A connection a previous test left behind (a worker thread still finishing its batch)
    # can hold a row lock on one table while waiting on another; TRUNCATE then takes its
    # locks table by table and PostgreSQL may pick it as the deadlock victim. Try again.
    for attempt in range(5):
        try:
            with engine.begin() as conn:
                conn.execute(text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE"))
            return
        except OperationalError as exc:
            if getattr(exc.orig, "sqlstate", None) != "40P01" or attempt == 4:
                raise
            time.sleep(0.2 * (attempt + 1))


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest) -> str:
    """A migrated, empty database on each backend in turn."""
    url: str = request.getfixturevalue(f"{request.param}_url")
    engine = make_engine(url)
    try:
        _empty_all_tables(engine)
    finally:
        engine.dispose()
    return url


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    eng = make_engine(database_url)
    yield eng
    eng.dispose()


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return Settings(
        development=True,
        database_url=database_url,
        interfaces_dir=REPO / "interfaces",
        code_tables_dir=REPO / "code_tables",
        mllp_port=0,
        web_port=0,
    )


# -- fuzz case counts: tests record `fuzz_cases`; the total is printed at the end of the run --
_FUZZ_CASES: dict[str, int] = {}


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    for name, value in report.user_properties:
        if name == "fuzz_cases":
            _FUZZ_CASES[report.nodeid] = int(str(value))


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _FUZZ_CASES:
        terminalreporter.write_line(
            f"fuzz: {sum(_FUZZ_CASES.values())} generated cases ran in "
            f"{len(_FUZZ_CASES)} properties"
        )
        for nodeid, count in sorted(_FUZZ_CASES.items()):
            terminalreporter.write_line(f"  {count:6d}  {nodeid}")
