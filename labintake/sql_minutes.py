"""`epoch_minutes(x)`: a timestamp as minutes since 1970-01-01 UTC, computed by the database.

The dashboard's turnaround figures read tens of thousands of timestamps; a float per value
is far cheaper to fetch and subtract than a datetime parsed from text (SQLite) or built with
its time zone. SQLite stores the service's timestamps as naive UTC text, which `julianday`
reads; PostgreSQL's `timestamptz` gives its epoch directly.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Float
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement

JULIAN_DAY_OF_EPOCH = 2440587.5
MINUTES_PER_DAY = 1440


class epoch_minutes(FunctionElement[float]):
    """Minutes since the Unix epoch (UTC) of a timestamp expression; NULL stays NULL."""

    type = Float()
    name = "epoch_minutes"
    inherit_cache = True


@compiles(epoch_minutes)
def _epoch_minutes(element: epoch_minutes, compiler: SQLCompiler, **kw: Any) -> str:
    return f"(EXTRACT(EPOCH FROM {compiler.process(element.clauses, **kw)}) / 60.0)"


@compiles(epoch_minutes, "sqlite")
def _epoch_minutes_sqlite(element: epoch_minutes, compiler: SQLCompiler, **kw: Any) -> str:
    value = compiler.process(element.clauses, **kw)
    return f"((julianday({value}) - {JULIAN_DAY_OF_EPOCH}) * {MINUTES_PER_DAY}.0)"
