"""Release tables: the outbound outbox, job leases and runs, notifications, the job store.

The outbox is written in the same transaction that sets an order `released`; the sender
reads it. A row keeps one message control id for its whole life, so every retry of a
message is recognisably the same message to the LIS.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Column,
    Float,
    Index,
    LargeBinary,
    Table,
    Text,
    Unicode,
    UniqueConstraint,
)
from sqlmodel import Field, SQLModel

from labintake.db import UTCDateTime, utcnow
from labintake.statuses import OutboxKind, OutboxStatus

__all__ = [
    "JobLease",
    "JobRun",
    "Notification",
    "OutboxEntry",
    "OutboxKind",
    "OutboxStatus",
]


class OutboxEntry(SQLModel, table=True):
    """One outbound HL7 message and its delivery state."""

    __tablename__ = "outbox"
    __table_args__ = (
        UniqueConstraint("control_id", name="uq_outbox_control_id"),
        Index("ix_outbox_due", "status", "next_attempt_at"),
        Index("ix_outbox_sequence", "destination", "sequence_key", "id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    order_id: int = Field(foreign_key="lab_order.id", index=True)
    kind: str = Field(default=OutboxKind.RELEASE, max_length=10)
    # "lis" for the lab system; an interface name for replies to a placer.
    destination: str = Field(default="lis", max_length=100)
    # Messages with the same key are delivered in id order (one patient's orders).
    sequence_key: str = Field(max_length=400)
    control_id: str = Field(max_length=40)
    message_type: str = Field(max_length=20)
    message: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    status: str = Field(default=OutboxStatus.PENDING, max_length=12)
    attempts: int = 0
    next_attempt_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
    claimed_by: str | None = Field(default=None, max_length=100)
    claimed_until: datetime | None = Field(default=None, sa_type=UTCDateTime, nullable=True)
    ack_code: str = Field(default="", max_length=2)
    last_error: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    created_by: str = Field(default="system", max_length=100)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
    delivered_at: datetime | None = Field(default=None, sa_type=UTCDateTime, nullable=True)
    dead_at: datetime | None = Field(default=None, sa_type=UTCDateTime, nullable=True)


class JobLease(SQLModel, table=True):
    """Who runs a scheduled job right now; a lease past `expires_at` may be taken over."""

    __tablename__ = "job_lease"

    name: str = Field(primary_key=True, max_length=100)
    owner: str = Field(max_length=100)
    acquired_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
    expires_at: datetime = Field(sa_type=UTCDateTime, nullable=False)


class JobRun(SQLModel, table=True):
    """One completed run of a job for one period; the unique key makes a period run once."""

    __tablename__ = "job_run"
    __table_args__ = (UniqueConstraint("job", "run_key", name="uq_job_run_key"),)

    id: int | None = Field(default=None, primary_key=True)
    job: str = Field(max_length=100)
    run_key: str = Field(max_length=100)
    owner: str = Field(max_length=100)
    finished_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
    result: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))


class Notification(SQLModel, table=True):
    """Something a person should see: a follow-up due, an escalation, a summary, a dead letter.

    `dedupe_key` makes each notice exist once however many instances raise it.
    """

    __tablename__ = "notification"
    __table_args__ = (
        UniqueConstraint("dedupe_key", name="uq_notification_dedupe"),
        Index("ix_notification_role_created", "recipient_role", "created_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    kind: str = Field(max_length=40)
    recipient_role: str = Field(max_length=20)  # coder | manager
    order_id: int | None = Field(default=None, foreign_key="lab_order.id", index=True)
    text: str = Field(sa_column=Column(Text, nullable=False))
    detail: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    dedupe_key: str = Field(max_length=200)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
    read_at: datetime | None = Field(default=None, sa_type=UTCDateTime, nullable=True)


# APScheduler's job store table, declared here so that Alembic owns the schema.
# Same shape as `apscheduler.jobstores.sqlalchemy.SQLAlchemyJobStore` creates.
scheduler_jobs = Table(
    "apscheduler_jobs",
    SQLModel.metadata,
    Column("id", Unicode(191), primary_key=True),
    Column("next_run_time", Float(25), index=True),
    Column("job_state", LargeBinary, nullable=False),
)
