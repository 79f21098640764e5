"""`insert_rows`, the hot paths' executemany: what it stores is what Core's insert stores, on
both databases; a row set it cannot take as it is goes through Core. Rows bound before the
transaction (`bind`, `insert_bound`, `insert_bound_returning`) store the same."""

from __future__ import annotations

import sqlite3
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
from labintake.models.orders import OrderEvent, OrderTest
from labintake.models.tables import (
    bind,
    insert_bound,
    insert_bound_returning,
    insert_rows,
    table_of,
)

EVENTS = table_of(OrderEvent)
TESTS = table_of(OrderTest)
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


def _raw_events(engine: Engine, actor: str) -> list[tuple[Any, ...]]:
    raw = "SELECT order_id, at, action, detail FROM order_event WHERE actor = '{}' ORDER BY id"
    with engine.connect() as connection:
        return [tuple(r) for r in connection.exec_driver_sql(raw.format(actor))]


def test_rows_bound_before_the_transaction_are_stored_as_core_stores_them(engine: Engine) -> None:
    order_id = _order(engine)
    bound = bind(engine.dialect, EVENTS, _rows(order_id, "early"))  # no connection yet
    with engine.begin() as connection:
        connection.execute(insert(EVENTS), _rows(order_id, "core"))
        insert_bound(connection, bound)
    assert len(_raw_events(engine, "early")) == 4
    assert _raw_events(engine, "early") == _raw_events(engine, "core")


def test_a_column_left_to_its_scalar_default_takes_it(engine: Engine) -> None:
    order_id = _order(engine)
    row = {"order_id": order_id, "seq": 7, "cpt": "80053", "local_code": "", "loinc": ""}
    bound = bind(engine.dialect, TESTS, [row])
    assert "units" in bound.prepared.keys  # Core's default, filled in by the binding
    with engine.begin() as connection:
        insert_bound(connection, bound)
        connection.execute(insert(TESTS), [{**row, "seq": 8}])
    columns = [TESTS.c.units, TESTS.c.modifiers, TESTS.c.sent_code, TESTS.c.location]
    with engine.connect() as connection:
        query = select(*columns).where(TESTS.c.order_id == order_id, TESTS.c.seq.in_([7, 8]))
        stored = [tuple(r) for r in connection.execute(query.order_by(TESTS.c.seq))]
    assert stored == [(1, "", "", ""), (1, "", "", "")]


def test_a_callable_default_left_out_cannot_be_bound(engine: Engine) -> None:
    row = {"order_id": 1, "actor": "x", "action": "x", "detail": {}}  # no "at"
    with pytest.raises(ValueError, match="callable default"):
        bind(engine.dialect, EVENTS, [row])


def test_rows_are_kept_by_owner_and_a_column_filled_in_later(engine: Engine) -> None:
    first, second = _order(engine), _order(engine)
    rows = [{"actor": "own", "at": AT, "action": f"a{n}", "detail": {"n": n}} for n in range(4)]
    bound = bind(engine.dialect, EVENTS, rows, owners=["x", "y", "x", "z"], later=["order_id"])
    kept = bound.only(lambda owner: owner != "z")
    kept.fill("order_id", {"x": first, "y": second}.__getitem__)
    with pytest.raises(ValueError, match="bind processor"):
        kept.fill("detail", lambda _owner: {})
    with engine.begin() as connection:
        insert_bound(connection, kept)
    stored = [(o, a, d) for o, _at, a, d in _stored(engine, "own")]
    assert stored == [
        (first, "a0", {"n": 0}),
        (second, "a1", {"n": 1}),
        (first, "a2", {"n": 2}),
    ]


def test_inserts_returning_give_each_row_its_id_across_statements(engine: Engine) -> None:
    order_id = _order(engine)
    count = 2_345  # five columns: at most 1,000 rows a statement, so three statements
    rows = [
        {"order_id": order_id, "at": AT, "actor": "many", "action": f"a{n}", "detail": {"n": n}}
        for n in range(count)
    ]
    statements: list[str] = []

    def seen(_c: Any, _cur: Any, statement: str, _p: Any, _ctx: Any, _many: bool) -> None:
        statements.append(statement.split()[0])

    bound = bind(engine.dialect, EVENTS, rows)
    event.listen(engine, "before_cursor_execute", seen)
    try:
        with engine.begin() as connection:
            returned = insert_bound_returning(connection, bound, ("id", "action"))
    finally:
        event.remove(engine, "before_cursor_execute", seen)
    assert statements == ["INSERT"] * 3
    with engine.connect() as connection:
        query = select(EVENTS.c.id, EVENTS.c.action).where(EVENTS.c.actor == "many")
        stored = {tuple(r) for r in connection.execute(query)}
    assert len(returned) == count
    assert set(returned) == stored


def test_inserts_returning_keep_within_sqlites_parameter_limit(engine: Engine) -> None:
    if engine.dialect.name != "sqlite":
        pytest.skip("SQLite's limit on bound parameters, set per connection")
    order_id = _order(engine)
    rows = [
        {"order_id": order_id, "at": AT, "actor": "lim", "action": f"a{n}", "detail": {}}
        for n in range(95)
    ]
    with engine.begin() as connection:
        raw = connection.connection.dbapi_connection
        assert raw is not None
        before = raw.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, 50)  # ten rows of five
        try:
            returned = insert_bound_returning(
                connection, bind(engine.dialect, EVENTS, rows), ("id", "action")
            )
        finally:
            raw.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, before)
    assert sorted(action for _, action in returned) == sorted(f"a{n}" for n in range(95))
    assert len(_stored(engine, "lim")) == 95
