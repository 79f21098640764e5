"""`insert_rows`, the hot paths' executemany: what it stores is what Core's insert stores, on
both databases; a row set it cannot take as it is goes through Core."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from factories_release import add_order
from sqlalchemy import event, insert, select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import StatementError

from labintake.db import session_scope
from labintake.lifecycle import OrderEventKind
from labintake.models import tables
from labintake.models.orders import OrderEvent
from labintake.models.tables import insert_rows, table_of

EVENTS = table_of(OrderEvent)
AT = datetime(2026, 3, 1, 8, 30, 15, 123456, tzinfo=UTC)


def _order(engine: Engine) -> int:
    with session_scope(engine) as session:
        order = add_order(session)
        assert order.id is not None
        return order.id


def _rows(order_id: int, actor: str) -> list[dict[str, Any]]:
    east = datetime(2026, 3, 1, 3, 30, tzinfo=UTC).astimezone()  # any zone: stored as UTC
    return [
        {
            "order_id": order_id,
            "at": AT + timedelta(seconds=n),
            "actor": actor,
            "action": OrderEventKind.VERIFIED,
            "detail": {"n": n, "text": "Núñez \u00fe \u2603", "nested": [1, None, {"a": True}]},
        }
        for n in range(3)
    ] + [
        {
            "order_id": order_id,
            "at": east,
            "actor": actor,
            "action": "note",
            "detail": {},
        }
    ]


def _stored(engine: Engine, actor: str) -> list[tuple[Any, ...]]:
    columns = [EVENTS.c.order_id, EVENTS.c.at, EVENTS.c.action, EVENTS.c.detail]
    with engine.connect() as connection:
        query = select(*columns).where(EVENTS.c.actor == actor).order_by(EVENTS.c.id)
        return [tuple(row) for row in connection.execute(query)]


def test_rows_are_stored_as_cores_insert_stores_them(engine: Engine) -> None:
    order_id = _order(engine)
    with engine.begin() as connection:
        connection.execute(insert(EVENTS), _rows(order_id, "core"))
        insert_rows(connection, EVENTS, _rows(order_id, "fast"))
    core, fast = _stored(engine, "core"), _stored(engine, "fast")
    assert len(fast) == 4
    assert fast == core
    assert fast[0][1] == AT  # read back as an aware UTC datetime, microseconds kept
    assert fast[0][3]["text"] == "Núñez \u00fe \u2603"
    # And the raw text in the database is byte for byte Core's, JSON and timestamps included.
    raw = "SELECT at, detail FROM order_event WHERE actor = '{}' ORDER BY id"
    with engine.connect() as connection:
        core_raw = connection.exec_driver_sql(raw.format("core")).all()
        fast_raw = connection.exec_driver_sql(raw.format("fast")).all()
    assert [tuple(r) for r in fast_raw] == [tuple(r) for r in core_raw]


def test_a_column_left_to_its_python_default_goes_through_core(engine: Engine) -> None:
    order_id = _order(engine)
    before = datetime.now(UTC)
    with engine.begin() as connection:
        # No "at": its default (now) is Python-side, which only Core applies; the row is
        # written all the same.
        row = {"order_id": order_id, "actor": "dflt", "action": "x", "detail": {}}
        insert_rows(connection, EVENTS, [row])
    [(stored_order, at, action, detail)] = _stored(engine, "dflt")
    assert (stored_order, action, detail) == (order_id, "x", {})
    assert at >= before - timedelta(seconds=1)
    key = (EVENTS.name, ("action", "actor", "detail", "order_id"), engine.dialect.name)
    assert tables._PREPARED[key] is None  # remembered: not compiled again


def test_rows_of_different_shapes_are_refused_as_core_refuses_them(engine: Engine) -> None:
    order_id = _order(engine)
    first = _rows(order_id, "mixed")[0]
    second = {key: value for key, value in first.items() if key != "detail"}
    with pytest.raises(StatementError, match="detail"), engine.begin() as connection:
        insert_rows(connection, EVENTS, [first, second])
    assert _stored(engine, "mixed") == []


def test_nothing_to_insert_is_no_statement(engine: Engine) -> None:
    with engine.begin() as connection:
        insert_rows(connection, EVENTS, [])
    assert _stored(engine, "") == []


def test_postgresql_streams_the_rows_and_sqlite_runs_one_executemany(engine: Engine) -> None:
    order_id = _order(engine)
    statements: list[tuple[str, bool]] = []

    def seen(_c: Any, _cur: Any, statement: str, _p: Any, _ctx: Any, many: bool) -> None:
        statements.append((statement.split()[0], many))

    event.listen(engine, "before_cursor_execute", seen)
    try:
        with engine.begin() as connection:
            insert_rows(connection, EVENTS, _rows(order_id, "path"))
    finally:
        event.remove(engine, "before_cursor_execute", seen)
    if engine.dialect.name == "postgresql":
        assert statements == []  # COPY on the driver's own cursor: no INSERT statement
    else:
        assert statements == [("INSERT", True)]
    assert len(_stored(engine, "path")) == 4
