"""Scratch databases on a PostgreSQL server, for the test suite and the benchmarks: created,
migrated (unless asked not to), and dropped afterwards with their connections ended; and a
backlog of synthetic messages stored as intake leaves them.

The server is reached at `LABINTAKE_TEST_PG` (default: postgres on 127.0.0.1:5432, trust
auth), with a user allowed to create databases."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator

from sqlalchemy import insert, text
from sqlalchemy.engine import Engine, make_url
from sqlmodel import SQLModel

import labintake.models
from benchmarks.messages import SENDING_APPLICATION, SENDING_FACILITY, synthetic_orders
from labintake.db import make_engine, migrate, utcnow

PG_ADMIN_URL = os.environ.get(
    "LABINTAKE_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)


@contextlib.contextmanager
def fresh_postgresql_database(
    prefix: str, *, migrated: bool = True, admin_url: str = PG_ADMIN_URL
) -> Iterator[str]:
    """A new database named `prefix_<random>` on the server of `admin_url` (migrated unless
    told otherwise), dropped (connections ended) after."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    admin = make_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    try:
        if migrated:
            migrate(url)
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = :n AND pid <> pg_backend_pid()"
                ),
                {"n": name},
            )
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
        admin.dispose()


def store_received(engine: Engine, count: int, prefix: str) -> list[bytes]:
    """Empty every table, then insert `count` synthetic messages (control ids `prefix...`) as
    intake leaves them, `received`; returns their raw bytes."""
    tables = [t.name for t in reversed(SQLModel.metadata.sorted_tables)]
    with engine.begin() as conn:
        for name in tables:
            conn.execute(text(f"DELETE FROM {name}"))
    messages = list(synthetic_orders(prefix, count))
    rows = [
        {
            "received_at": utcnow(),
            "sending_application": SENDING_APPLICATION,
            "sending_facility": SENDING_FACILITY,
            "control_id": message.control_id,
            "message_type": "ORM^O01",
            "version": "2.5.1",
            "raw": message.raw,
            "ack_code": "AA",
            "ack": b"MSA|AA",
            "status": "received",
        }
        for message in messages
    ]
    with engine.begin() as conn:
        conn.execute(insert(labintake.models.InboundMessage), rows)
    return [message.raw for message in messages]
