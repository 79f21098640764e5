"""The schema migrations: every table, and several instances migrating one database at once."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text
from sqlalchemy.engine import Engine
from sqlmodel import SQLModel

from benchmarks.databases import fresh_postgresql_database
from labintake.config import Settings
from labintake.db import make_engine

# Tables that are not models: APScheduler's job store.
IGNORED = {"apscheduler_jobs"}


def test_the_migrated_schema_matches_the_models(engine: Engine) -> None:
    """Alembic's comparison of the migrated database with the models finds nothing to add,
    drop or change: every model change came with its migration."""
    import labintake.models  # noqa: F401 - registers every table on the metadata

    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        differences = [
            d
            for d in compare_metadata(context, SQLModel.metadata)
            if not (isinstance(d, tuple) and d[0] == "remove_table" and d[1].name in IGNORED)
        ]
    assert differences == []


def test_migrations_create_every_table(engine: Engine) -> None:
    tables = set(inspect(engine).get_table_names())
    assert {"inbound_message", "lab_order", "order_test", "finding", "order_event"} <= tables
    assert "alembic_version" in tables


@pytest.mark.skipif(
    "postgresql" not in os.environ.get("LABINTAKE_TEST_BACKENDS", "sqlite,postgresql"),
    reason="PostgreSQL is not among the test backends",
)
def test_instances_migrating_one_postgresql_database_at_once_all_succeed() -> None:
    """Containers started together each run `labintake migrate`: one migrates, the others
    wait for it and then find the schema current."""
    with fresh_postgresql_database("labintake_migrate", migrated=False) as url:
        env = {**os.environ, "LABINTAKE_DATABASE_URL": url, "LABINTAKE_DEVELOPMENT": "1"}
        processes = [
            subprocess.Popen(
                [sys.executable, "-m", "labintake", "migrate"],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            for _ in range(4)
        ]
        outputs = [process.communicate(timeout=120)[0] for process in processes]
        assert [p.returncode for p in processes] == [0, 0, 0, 0], outputs
        engine = make_engine(url)
        try:
            with engine.connect() as conn:
                versions = conn.execute(text("SELECT version_num FROM alembic_version")).all()
            assert len(versions) == 1
            assert "lab_order" in inspect(engine).get_table_names()
        finally:
            engine.dispose()


def test_a_database_holding_orders_migrates_down_to_the_first_schema_and_back_up(
    engine: Engine, settings: Settings, database_url: str
) -> None:
    """Every migration runs on a database with rows in every table that refers to orders
    (a batch rebuild of `lab_order` on SQLite drops a table that others point at), keeps
    them, and fills what it adds for the rows already there."""
    from alembic import command
    from alembic.config import Config

    from labintake.db import MIGRATIONS_DIR, migrate
    from tests.factories import OrderSpec, held_order

    held_order(engine, settings, OrderSpec(family="Núñez", priority="S"))
    with engine.connect() as conn:
        key = conn.execute(text("SELECT beneficiary_key FROM lab_order")).scalar_one()
    assert key
    before = _counts(engine)
    engine.dispose()
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    command.downgrade(config, "0001")
    migrate(database_url)
    assert _counts(engine) == before
    with engine.connect() as conn:
        row = conn.execute(
            text("SELECT family_fold, priority_rank, beneficiary_key FROM lab_order")
        ).one()
    assert tuple(row) == ("nunez", 0, key)


def _counts(engine: Engine) -> dict[str, int]:
    tables = ("inbound_message", "lab_order", "order_test", "order_diagnosis", "finding")
    with engine.connect() as conn:
        return {t: conn.execute(text(f"SELECT count(*) FROM {t}")).scalar_one() for t in tables}


def test_migrate_says_plainly_when_the_database_cannot_be_reached() -> None:
    """Exit status 75 (try again later) is what the container entrypoint retries; a broken
    install or a failing migration exits otherwise and is not retried."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LABINTAKE_")}
    env["LABINTAKE_DEVELOPMENT"] = "1"
    # Port 9 (discard) on this host: nothing listens, the connection is refused at once.
    env["LABINTAKE_DATABASE_URL"] = "postgresql+psycopg://nobody:secret@127.0.0.1:9/none"
    done = subprocess.run(
        [sys.executable, "-m", "labintake", "migrate"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 75, done.stderr
    assert done.stderr.startswith("cannot reach the database at postgresql+psycopg://nobody:")
    assert "secret" not in done.stderr
    assert "Traceback" not in done.stderr
