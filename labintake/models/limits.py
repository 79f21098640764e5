"""The length limits of the tables' text columns, read from the models (never copied by hand)."""

from __future__ import annotations

from functools import cache
from typing import Any


@cache
def column_limits(model: Any) -> dict[str, int]:
    """Column name -> maximum length, for every length-limited text column of a table model."""
    limits: dict[str, int] = {}
    for column in model.__table__.columns:
        length = getattr(column.type, "length", None)
        if isinstance(length, int) and length > 0:
            limits[column.name] = length
    return limits


def column_limit(model: Any, name: str) -> int:
    """The maximum length of one text column (KeyError for a column without one)."""
    return column_limits(model)[name]
