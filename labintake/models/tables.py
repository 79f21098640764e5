"""The table behind a model, for the Core statements of the hot paths (bulk inserts, set-based
updates, plain-row selects), where building ORM objects would cost more than the statement."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Table


def table_of(model: Any) -> Table:
    """`model.__table__`, typed (SQLModel does not declare it)."""
    table: Table = model.__table__
    return table
