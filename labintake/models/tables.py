"""The table behind a model, for the Core statements of the hot paths (bulk inserts, set-based
updates, plain-row selects), where building ORM objects would cost more than the statement."""

from __future__ import annotations

import sqlite3
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


_EMPTY = _PreparedInsert("", (), (), True)

_PREPARED: dict[tuple[str, tuple[str, ...], str], _PreparedInsert | None] = {}
_PREPARED_LOCK = threading.Lock()


@dataclass(slots=True)
class Bound:
    """Rows of one table as the driver's parameters, bound ahead of the transaction.

    Binding (building each row's parameters and running each column type's bind processor:
    JSON, dates) is most of a hot-path insert's work on the Python side. Done before the
    transaction begins, it no longer counts in the time the transaction holds the database
    (on SQLite, the whole file's write lock, which intake's commits wait for). `owners` says
    whose each row is (a key of the caller's: rows can be kept or dropped by it, and a
    column left for later, such as a parent's id known only once inserted, filled by it)."""

    table: Table
    prepared: _PreparedInsert
    parameters: list[list[Any]]
    owners: list[Any]

    def only(self, keep: Callable[[Any], bool]) -> Bound:
        """The rows whose owner `keep` accepts."""
        pairs = [(p, o) for p, o in zip(self.parameters, self.owners, strict=True) if keep(o)]
        return Bound(self.table, self.prepared, [p for p, _ in pairs], [o for _, o in pairs])

    def fill(self, key: str, by_owner: Callable[[Any], Any]) -> None:
        """Set column `key` of every row to `by_owner(owner)` (a column without a bind
        processor, such as an id)."""
        if not self.parameters:
            return
        index = self.prepared.keys.index(key)
        if self.prepared.processors[index] is not None:
            raise ValueError(f"{self.table.name}.{key} has a bind processor: bind it with the row")
        for parameters, owner in zip(self.parameters, self.owners, strict=True):
            parameters[index] = by_owner(owner)


def bind(
    dialect: Dialect,
    table: Table,
    rows: Sequence[Mapping[str, Any]],
    owners: Sequence[Any] | None = None,
    later: Sequence[str] = (),
) -> Bound:
    """`rows` (mappings with the same keys) as `table`'s parameters for `dialect`; columns in
    `later` are left empty for `Bound.fill`. A column the rows leave out takes its scalar
    default; one with a Python-side callable default (a time) must be given."""
    if not rows:
        return Bound(table, _EMPTY, [], [])
    keys = tuple(rows[0])
    extra = dict.fromkeys(k for k in later if k not in keys)
    extra.update(_scalar_defaults(table, (*keys, *extra)))
    prepared = _prepared(dialect, table, (*keys, *extra))
    if prepared is None:
        raise ValueError(f"rows for {table.name} leave out a column with a callable default")
    filled = [{**row, **extra} for row in rows] if extra else rows
    if any(len(row) != len(prepared.keys) for row in filled):
        raise ValueError(f"rows for {table.name} do not all have the same columns")
    values = itemgetter(*prepared.keys) if len(prepared.keys) > 1 else _one(prepared.keys[0])
    processed = [(i, p) for i, p in enumerate(prepared.processors) if p is not None]
    parameters: list[list[Any]] = []
    for row in filled:
        bound = list(values(row))
        for index, process in processed:
            bound[index] = process(bound[index])
        parameters.append(bound)
    return Bound(
        table,
        prepared,
        parameters,
        list(owners) if owners is not None else [None] * len(parameters),
    )


def insert_bound(connection: Connection, bound: Bound) -> None:
    """INSERT bound rows: one executemany on SQLite, one COPY on PostgreSQL (psycopg)."""
    if not bound.parameters:
        return
    prepared = bound.prepared
    if connection.dialect.driver == "psycopg":
        _copy(connection, bound.table, prepared.keys, bound.parameters)
    elif prepared.positional:
        connection.exec_driver_sql(prepared.sql, [tuple(p) for p in bound.parameters])
    else:
        named = [dict(zip(prepared.keys, p, strict=True)) for p in bound.parameters]
        connection.exec_driver_sql(prepared.sql, named)


# Bound parameters per statement on PostgreSQL (its protocol's limit); SQLite says its own.
_POSTGRESQL_MAX_PARAMETERS = 65535


def _max_parameters(connection: Connection) -> int:
    """How many parameters one statement may bind on this connection."""
    if connection.dialect.name == "sqlite":
        raw = connection.connection.dbapi_connection
        limit: int = raw.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)  # type: ignore[union-attr]
        return limit
    return _POSTGRESQL_MAX_PARAMETERS


def insert_bound_returning(
    connection: Connection,
    bound: Bound,
    returning: Sequence[str],
    *,
    skip_conflicts: bool = False,
    raw: bool = False,
) -> list[tuple[Any, ...]]:
    """INSERT bound rows in multi-row VALUES statements, returning `returning` of each row
    (in no particular order: match them by a key of the rows). `skip_conflicts`: a row that
    would break a unique constraint is left out (``ON CONFLICT DO NOTHING``), and returns
    nothing. `raw`: on the driver's cursor, in the connection's transaction, without
    SQLAlchemy's events and result objects (see `raw_rows`)."""
    if not bound.parameters:
        return []
    dialect = connection.dialect
    preparer = dialect.identifier_preparer
    keys = bound.prepared.keys
    if dialect.paramstyle not in ("qmark", "format", "pyformat"):
        raise ValueError(f"parameter style {dialect.paramstyle!r} is not supported")
    mark = "?" if dialect.paramstyle == "qmark" else "%s"
    one = "(" + ", ".join([mark] * len(keys)) + ")"
    # Names from the table's metadata, quoted by the dialect; every value a bound parameter.
    head = (
        f"INSERT INTO {preparer.format_table(bound.table)} "  # noqa: S608
        f"({', '.join(preparer.quote(k) for k in keys)}) VALUES "
    )
    tail = " ON CONFLICT DO NOTHING" if skip_conflicts else ""
    tail += " RETURNING " + ", ".join(preparer.quote(c) for c in returning)
    per_statement = max(1, min(1000, _max_parameters(connection) // len(keys)))
    returned: list[tuple[Any, ...]] = []
    for start in range(0, len(bound.parameters), per_statement):
        chunk = bound.parameters[start : start + per_statement]
        flat = tuple(value for row in chunk for value in row)
        sql = head + ", ".join([one] * len(chunk)) + tail
        if raw:
            returned += raw_rows(connection, sql, flat)
        else:
            returned += [tuple(row) for row in connection.exec_driver_sql(sql, flat)]
    return returned


def raw_rows(connection: Connection, sql: str, parameters: Sequence[Any]) -> list[tuple[Any, ...]]:
    """Execute `sql` on the driver's cursor, in the connection's transaction: what a statement
    returns, as tuples. For the intake writer's one-message commits, where SQLAlchemy's
    result objects (column metadata built for every textual statement) cost more than
    SQLite's own work. No SQLAlchemy event sees the statement."""
    cursor = connection.connection.cursor()
    try:
        cursor.execute(sql, parameters)
        return [tuple(row) for row in cursor.fetchall()] if cursor.description else []
    finally:
        cursor.close()


def insert_rows(connection: Connection, table: Table, rows: Sequence[Mapping[str, Any]]) -> None:
    """INSERT `rows` (mappings with the same keys) into `table`: one executemany on SQLite, one
    COPY on PostgreSQL (through psycopg).

    What SQLAlchemy's Core does for each row of an executemany (building the parameters from
    the compiled statement, then each column type's bind processor) is the larger part of a
    hot-path insert. Here the statement is compiled once per table and set of columns, and
    each row becomes the driver's parameters through the same bind processors
    (`TypeEngine.dialect_impl(dialect).bind_processor`), so the values stored are the ones
    Core would store (`bind`; callers that can bind before their transaction use it and
    `insert_bound`). On PostgreSQL the rows are streamed with COPY (psycopg adapts each value
    as it would a parameter) instead of an INSERT executed per row, each a round trip of the
    pipeline and a statement for the server. Rows of uneven keys, or leaving out a column
    with a Python-side callable default, go through Core, which applies it."""
    if not rows:
        return
    try:
        bound = bind(connection.dialect, table, rows)
    except ValueError:
        connection.execute(insert(table), list(rows))
        return
    insert_bound(connection, bound)


def _scalar_defaults(table: Table, keys: Sequence[str]) -> dict[str, Any]:
    """The scalar defaults of the columns `keys` leave out (a callable default is left out)."""
    given = set(keys)
    return {
        c.key: c.default.arg  # type: ignore[attr-defined]
        for c in table.columns
        if c.key not in given and c.default is not None and c.default.is_scalar
    }


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
