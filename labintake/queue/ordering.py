"""How the queue is ordered and paged: each sort's keys, and the cursor that continues a page.

Every sort is a keyset (its keys, then the order id), so page N costs what page 1 costs.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from datetime import date, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import func
from sqlalchemy import select as sa_select
from sqlmodel import col

from labintake.errors import WorkflowError
from labintake.models.orders import Order, OrderTest


class QueueSort(StrEnum):
    """How the queue is ordered; every order is a keyset (its keys, then the order id)."""

    URGENT = "urgent"  # STAT first, then by when the next action is due (the default)
    DUE = "due"  # next action due first, whatever the priority
    OLDEST = "oldest"  # arrival order
    NEWEST = "newest"
    DOS = "dos"  # date of service, earliest first (none last)
    DOS_DESC = "-dos"
    PAYER = "payer"  # payer name A-Z
    PAYER_DESC = "-payer"
    TESTS = "tests"  # first test code A-Z
    TESTS_DESC = "-tests"


_NO_DATE = date(9999, 12, 31)  # orders without a date of service sort last


def _first_test() -> Any:
    return (
        sa_select(func.min(OrderTest.sent_code))
        .where(col(OrderTest.order_id) == col(Order.id))
        .scalar_subquery()
    )


def sort_keys(sort: QueueSort) -> tuple[list[Any], bool]:
    """The columns a sort orders by before the order id, and whether it runs descending."""
    keys: dict[QueueSort, list[Any]] = {
        QueueSort.URGENT: [col(Order.priority_rank), col(Order.due_at)],
        QueueSort.DUE: [col(Order.due_at)],
        QueueSort.OLDEST: [],
        QueueSort.NEWEST: [],
        QueueSort.DOS: [func.coalesce(col(Order.date_of_service), _NO_DATE)],
        QueueSort.PAYER: [col(Order.payer_company_name)],
        QueueSort.TESTS: [func.coalesce(_first_test(), "")],
    }
    ascending = QueueSort(sort.removeprefix("-"))
    return keys[ascending], sort in (
        QueueSort.NEWEST,
        QueueSort.DOS_DESC,
        QueueSort.PAYER_DESC,
        QueueSort.TESTS_DESC,
    )


def _encode(value: Any) -> Any:
    if isinstance(value, datetime):
        return {"t": value.isoformat()}
    if isinstance(value, date):
        return {"d": value.isoformat()}
    return value


def _decode(value: Any) -> Any:
    if isinstance(value, dict) and set(value) == {"t"}:
        when = datetime.fromisoformat(str(value["t"]))
        if when.tzinfo is None:
            raise ValueError("cursor time without a zone")
        return when
    if isinstance(value, dict) and set(value) == {"d"}:
        return date.fromisoformat(str(value["d"]))
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise ValueError("cursor value of an unknown kind")
    return value


def make_cursor(sort: QueueSort, keys: Sequence[Any], order_id: int) -> str:
    """The cursor of the page that starts after the row with these sort keys and id."""
    raw = json.dumps([sort, [_encode(k) for k in keys], order_id])
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str, sort: QueueSort) -> tuple[list[Any], int]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        kind, keys, order_id = json.loads(base64.urlsafe_b64decode(padded))
        if kind != sort:
            raise ValueError("cursor from another sort order")
        expected = len(sort_keys(sort)[0])
        if not isinstance(keys, list) or len(keys) != expected:
            raise ValueError("cursor keys do not fit the sort order")
        last_id = int(order_id)
        if not 0 <= last_id < 2**63:
            raise ValueError("cursor out of range")
        return [_decode(k) for k in keys], last_id
    except (ValueError, TypeError, json.JSONDecodeError) as exc:
        raise WorkflowError(f"bad page cursor: {exc}") from exc
