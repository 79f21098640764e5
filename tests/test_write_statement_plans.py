"""The write statements of release and delivery find their rows by key, not by walking a status.

On SQLite a write statement holds the database's one write lock, which every ACK of intake
waits for, from its start to the commit. SQLite has no table statistics here, so a WHERE
with a status beside the keys can make its planner walk the status index instead (every
pending message of the outbox, every verified order): a cost that grows with a backlog,
such as the one an outage of the LIS leaves. These tests read SQLite's query plan of each
UPDATE that release and delivery run, and of the read choosing the due messages, which must
stop at its limit rather than sort every due message."""

from __future__ import annotations

import re
from typing import Any

import pytest
from factories_release import make_orders
from sqlalchemy import event
from sqlalchemy.engine import Engine

from labintake.intake.writer import GroupCommitWriter
from labintake.release.bulk import release_verified
from labintake.release.delivery import claim_due

# A step walking an index on the status alone, a whole table, or sorting what it found.
_WALK = re.compile(
    r"USING (COVERING )?INDEX \w+ \(status=\?\)$|^SCAN (?!.*CONSTANT)|TEMP B-TREE FOR ORDER BY"
)


def _updates_of(engine: Engine, run: Any) -> list[tuple[str, Any]]:
    seen: list[tuple[str, Any]] = []

    def record(_c: Any, _cur: Any, statement: str, params: Any, _ctx: Any, many: bool) -> None:
        words = statement.split()
        finds = "outbox.order_id IN" in statement or "FROM outbox o" in statement
        if not many and (words[0] in ("UPDATE", "WITH") or finds):
            seen.append((statement, params))

    event.listen(engine, "before_cursor_execute", record)
    try:
        run()
    finally:
        event.remove(engine, "before_cursor_execute", record)
    return seen


def _walks(engine: Engine, statements: list[tuple[str, Any]]) -> list[tuple[str, list[str]]]:
    found = []
    with engine.connect() as connection:
        cursor = connection.connection.cursor()
        for statement, params in statements:
            steps = [row[-1] for row in cursor.execute("EXPLAIN QUERY PLAN " + statement, params)]
            if any(_WALK.search(step) for step in steps):
                found.append((" ".join(statement.split())[:120], steps))
    return found


def test_release_and_delivery_update_their_rows_by_key(engine: Engine) -> None:
    if engine.dialect.name != "sqlite":
        pytest.skip("SQLite's planner (PostgreSQL plans with its table statistics)")
    make_orders(engine, 120)
    release_verified(engine, limit=60)  # a backlog: 60 pending messages, 60 orders verified
    with engine.begin() as connection:  # ten released orders sent back to be released again
        connection.exec_driver_sql(
            "UPDATE lab_order SET status = 'verified' WHERE id IN "
            "(SELECT order_id FROM outbox ORDER BY id LIMIT 10)"
        )
    statements = _updates_of(engine, lambda: release_verified(engine, limit=30, chunk=30))
    statements += _updates_of(engine, lambda: claim_due(engine, "plans", limit=20))
    with engine.connect() as connection:
        superseded = connection.exec_driver_sql(
            "SELECT count(*) FROM outbox WHERE status = 'superseded'"
        ).scalar_one()
    assert superseded == 10
    assert _walks(engine, statements) == []
    shown = [" ".join(s.split()[:3]) for s, _ in statements]
    # The release claim, the older messages found and superseded, the delivery claim.
    assert shown.count("UPDATE lab_order SET") == 1
    assert shown.count("UPDATE outbox SET") == 2
    assert any(s.startswith("SELECT outbox.id") for s in shown)
    assert shown.count("SELECT o.id FROM") == 1  # the due messages, chosen in a read


def test_intake_looks_stored_messages_up_by_control_id_not_by_walking_its_key(
    engine: Engine,
) -> None:
    """Intake's duplicate look-up runs for every batch the journal takes (and for a batch's
    resends): a walk of the whole unique index, as ``(a, b, ...) IN (VALUES ...)`` of two keys
    or more planned on SQLite, grew with the store."""
    if engine.dialect.name != "sqlite":
        pytest.skip("SQLite's planner (PostgreSQL plans with its table statistics)")
    writer = GroupCommitWriter(engine)
    for count in (1, 3, 50):
        sql = writer.stored_sql(count)
        assert _walks(engine, [(sql, [f"C{i}" for i in range(count)])]) == []
