"""Database tables (SQLModel), one module per area; importing this package registers them all.

Schema changes are Alembic migrations under `labintake/migrations/versions/`.
"""

from labintake.models.messages import InboundMessage
from labintake.models.orders import (
    Finding,
    Order,
    OrderDiagnosis,
    OrderEvent,
    OrderTest,
    Verification,
)

__all__ = [
    "Finding",
    "InboundMessage",
    "Order",
    "OrderDiagnosis",
    "OrderEvent",
    "OrderTest",
    "Verification",
]
