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
from labintake.models.queue import OfficeContact, OfficeQuery, OrderNote
from labintake.models.reading import MessageEvent
from labintake.models.release import JobLease, JobRun, Notification, OutboxEntry
from labintake.models.users import ApiToken, AuditEntry, IdempotencyKey, User, WebSession
from labintake.models.workers import WorkerStage

__all__ = [
    "ApiToken",
    "AuditEntry",
    "Finding",
    "IdempotencyKey",
    "InboundMessage",
    "JobLease",
    "JobRun",
    "MessageEvent",
    "Notification",
    "OfficeContact",
    "OfficeQuery",
    "Order",
    "OrderDiagnosis",
    "OrderEvent",
    "OrderNote",
    "OrderTest",
    "OutboxEntry",
    "User",
    "Verification",
    "WebSession",
    "WorkerStage",
]
