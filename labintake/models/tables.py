"""The table behind a model, for the Core statements of the hot paths (bulk inserts, set-based
updates, plain-row selects), where building ORM objects would cost more than the statement."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from operator import itemgetter
from typing import Any

from sqlalchemy import Table, insert
from sqlalchemy.engine import Connection, Dialect


def table_of(model: Any) -> Table:
    """`model.__table__`, typed (SQLModel does not declare it)."""
    table: Table = model.__table__
    return table


@dataclass(frozen=True, slots=True)
class _PreparedInsert:
    sql: str
    keys: tuple[str, ...]  # the bound parameters' names, in the statement's order
    processors: tuple[Callable[[Any], Any] | None, ...]
    positional: bool


_PREPARED: dict[tuple[str, tuple[str, ...], str], _PreparedInsert | None] = {}
_PREPARED_LOCK = threading.Lock()


def insert_rows(connection: Connection, table: Table, rows: Sequence[Mapping[str, Any]]) -> None:
    """INSERT `rows` (mappings with the same keys) into `table`: one executemany on SQLite, one
    COPY on PostgreSQL (through psycopg).

    What SQLAlchemy's Core does for each row of an executemany (building the parameters from
    the compiled statement, then each column type's bind processor) is the larger part of a
    hot-path insert, and it runs while the transaction holds the database (on SQLite, the
    whole file's write lock, which intake's commits wait for). Here the statement is compiled
    once per table and set of columns, and each row becomes the driver's parameters through
    the same bind processors (`TypeEngine.dialect_impl(dialect).bind_processor`), so the
    values stored are the ones Core would store. On PostgreSQL the rows are streamed with COPY
    (psycopg adapts each value as it would a parameter) instead of an INSERT executed per row,
    each a round trip of the pipeline and a statement for the server. A table with a
    Python-side default on a column the rows leave out goes through Core, which applies it."""
    if not rows:
        return
    keys = tuple(rows[0])
    prepared = _prepared(connection.dialect, table, keys)
    if prepared is None or any(len(row) != len(keys) for row in rows):
        connection.execute(insert(table), list(rows))
        return
    values = itemgetter(*prepared.keys) if len(prepared.keys) > 1 else _one(prepared.keys[0])
    processed = [(i, p) for i, p in enumerate(prepared.processors) if p is not None]
    parameters: list[Any] = []
    for row in rows:
        bound = values(row)
        if processed:
            bound = list(bound)
            for index, process in processed:
                bound[index] = process(bound[index])
        parameters.append(bound)
    if connection.dialect.driver == "psycopg":
        _copy(connection, table, prepared.keys, parameters)
    elif prepared.positional:
        connection.exec_driver_sql(prepared.sql, [tuple(p) for p in parameters])
    else:
        named = [dict(zip(prepared.keys, p, strict=True)) for p in parameters]
        connection.exec_driver_sql(prepared.sql, named)


def _copy(
    connection: Connection, table: Table, keys: Sequence[str], rows: Sequence[Sequence[Any]]
) -> None:
    """psycopg's COPY FROM STDIN on the connection's own transaction."""
    preparer = connection.dialect.identifier_preparer
    columns = ", ".join(preparer.quote(key) for key in keys)
    statement = f"COPY {preparer.format_table(table)} ({columns}) FROM STDIN"
    cursor = connection.connection.cursor()
    try:
        with cursor.copy(statement) as copy:
            for row in rows:
                copy.write_row(row)
    finally:
        cursor.close()


def _one(key: str) -> Callable[[Mapping[str, Any]], tuple[Any, ...]]:
    return lambda row: (row[key],)


def _prepared(dialect: Dialect, table: Table, keys: tuple[str, ...]) -> _PreparedInsert | None:
    cache_key = (table.name, tuple(sorted(keys)), dialect.name)
    with _PREPARED_LOCK:
        if cache_key in _PREPARED:
            return _PREPARED[cache_key]
    given = set(keys)
    defaulted = [
        c.key
        for c in table.columns
        if c.key not in given and (c.default is not None or c.onupdate is not None)
    ]
    prepared: _PreparedInsert | None = None
    if not defaulted and given <= set(table.columns.keys()):
        columns = sorted(given, key=list(table.columns.keys()).index)
        compiled = insert(table).compile(dialect=dialect, column_keys=columns)
        names = tuple(compiled.positiontup or ()) if compiled.positional else tuple(columns)
        if set(names) == given:
            processors = tuple(
                table.columns[name].type.dialect_impl(dialect).bind_processor(dialect)
                for name in names
            )
            prepared = _PreparedInsert(str(compiled), names, processors, compiled.positional)
    with _PREPARED_LOCK:
        _PREPARED[cache_key] = prepared
    return prepared
