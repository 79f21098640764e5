"""UTCDateTime's bind processor remembers the last value it converted (a batch binds one
`now` to every row): what is stored must not depend on it."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import Column, Integer, MetaData, Table, insert, select, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import StatementError

from labintake.db import UTCDateTime

NOW = datetime(2026, 12, 7, 8, 30, 15, 123456, tzinfo=UTC)


@pytest.fixture
def probe(engine: Engine) -> Iterator[Table]:
    table = Table(
        "utc_datetime_probe",
        MetaData(),
        Column("id", Integer, primary_key=True, autoincrement=False),
        Column("at", UTCDateTime(), nullable=True),
    )
    table.drop(engine, checkfirst=True)
    table.create(engine)
    yield table
    table.drop(engine)


def _stored(engine: Engine, table: Table) -> list[str]:
    """The column as the database holds it (its own text of each value)."""
    with engine.connect() as conn:
        rows = conn.execute(text(f"SELECT CAST(at AS TEXT) FROM {table.name} ORDER BY id"))
        return [row[0] for row in rows]


def _insert(engine: Engine, table: Table, values: list[datetime | None]) -> None:
    with engine.begin() as conn:
        conn.execute(insert(table), [{"id": i, "at": v} for i, v in enumerate(values)])


def test_one_timestamp_bound_to_every_row_is_stored_as_each_row_alone_would_be(
    engine: Engine, probe: Table
) -> None:
    elsewhere = NOW.astimezone(timezone(timedelta(hours=-5)))  # the same instant
    _insert(engine, probe, [NOW, NOW, NOW.replace(), elsewhere, NOW])
    stored = _stored(engine, probe)
    assert len(set(stored)) == 1
    with engine.connect() as conn:
        assert list(conn.execute(select(probe.c.at)).scalars()) == [NOW] * 5


def test_a_different_timestamp_after_the_remembered_one_is_converted_afresh(
    engine: Engine, probe: Table
) -> None:
    later = NOW + timedelta(microseconds=1)
    _insert(engine, probe, [NOW, later, None, NOW, later])
    with engine.connect() as conn:
        read = list(conn.execute(select(probe.c.at).order_by(probe.c.id)).scalars())
    assert read == [NOW, later, None, NOW, later]


def test_a_naive_timestamp_is_refused_right_after_an_aware_one(
    engine: Engine, probe: Table
) -> None:
    _insert(engine, probe, [NOW])
    with pytest.raises(StatementError, match="naive datetime"):
        _insert(engine, probe, [NOW.replace(tzinfo=None)])
