"""Rejecting with one of the lab's reasons, details in free text (required for "Other")."""

from __future__ import annotations

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session

from labintake.auth.roles import Role
from labintake.config import Settings
from labintake.errors import WorkflowError
from labintake.models.orders import Order
from labintake.queue.service import Actor, ClarificationQueue
from labintake.statuses import OrderStatus
from tests.factories import held_order

ANN = Actor("ann", Role.CODER, "web")


def _version(engine: Engine, order_id: int) -> int:
    with Session(engine) as session:
        order = session.get(Order, order_id)
        assert order is not None
        return order.row_version


def test_a_listed_reason_with_details_is_what_the_office_is_told(
    engine: Engine, settings: Settings
) -> None:
    order_id = held_order(engine, settings)
    with Session(engine) as session:
        result = ClarificationQueue(session, settings).reject(
            ANN,
            order_id,
            _version(engine, order_id),
            category="Duplicate of an earlier order",
            reason="Same as PF8990",
        )
        assert result.order.status == OrderStatus.REJECTED.value
        reason = result.order.details["reject_reason"]
    assert reason == "Duplicate of an earlier order: Same as PF8990"


@pytest.mark.parametrize(
    ("category", "details", "field", "message"),
    [
        ("Because I said so", "", "category", "choose one of the reasons"),
        ("Other", "", "reason", "'Other' needs details"),
        ("", "  ", "reason", "needs a reason the ordering office can act on"),
    ],
)
def test_a_reason_outside_the_list_or_other_without_details_is_refused(
    engine: Engine, settings: Settings, category: str, details: str, field: str, message: str
) -> None:
    order_id = held_order(engine, settings)
    with Session(engine) as session, pytest.raises(WorkflowError, match=message) as refused:
        ClarificationQueue(session, settings).reject(
            ANN, order_id, _version(engine, order_id), category=category, reason=details
        )
    assert refused.value.field == field


def test_other_with_details_says_only_the_details(engine: Engine, settings: Settings) -> None:
    order_id = held_order(engine, settings)
    with Session(engine) as session:
        result = ClarificationQueue(session, settings).reject(
            ANN,
            order_id,
            _version(engine, order_id),
            category="Other",
            reason="Sent to us by error",
        )
        assert result.order.details["reject_reason"] == "Sent to us by error"
