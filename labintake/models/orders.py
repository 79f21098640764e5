"""Orders read from messages, their tests, diagnoses, verifications, findings and history."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import JSON, Column, Index, SmallInteger, String, Text, UniqueConstraint, text
from sqlmodel import Field, SQLModel

from labintake.db import UTCDateTime, utcnow
from labintake.statuses import FindingState, OrderStatus

FIRST_ACTION_HOURS = 24


def first_action_due(arrived: datetime) -> datetime:
    """When a newly held order should first be looked at."""
    return arrived + timedelta(hours=FIRST_ACTION_HOURS)


class Order(SQLModel, table=True):
    """One order group of a received message, as read and as it moves through the workflow."""

    __tablename__ = "lab_order"
    __table_args__ = (
        UniqueConstraint("message_id", "group_index", name="uq_order_message_group"),
        Index("ix_order_status_id", "status", "id"),
        Index("ix_order_placer", "sending_facility", "placer_order_number"),
        Index("ix_order_patient_dos", "patient_mrn", "date_of_service"),
        # The clarification queue: held orders by when their next action is due.
        Index(
            "ix_order_queue_due",
            "due_at",
            "id",
            "status",
            sqlite_where=text("status IN ('held', 'awaiting_office')"),
            postgresql_where=text("status IN ('held', 'awaiting_office')"),
        ),
        Index("ix_order_assigned", "assigned_to", "status"),
        # STAT first: held orders by priority rank, then when their next action is due.
        Index(
            "ix_order_queue_priority",
            "priority_rank",
            "due_at",
            "id",
            "status",
            sqlite_where=text("status IN ('held', 'awaiting_office')"),
            postgresql_where=text("status IN ('held', 'awaiting_office')"),
        ),
        # The coder's search box: placer number alone, and an accent-free family-name prefix.
        Index("ix_order_placer_number", "placer_order_number"),
        Index("ix_order_family_fold", "family_fold"),
        # A patient's history across senders: the MBI when the order carries one.
        Index("ix_order_beneficiary_dos", "beneficiary_key", "date_of_service"),
        # The dashboard's date ranges: orders received between two days.
        Index("ix_order_created_at", "created_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    message_id: int = Field(foreign_key="inbound_message.id", index=True)
    group_index: int
    status: str = Field(default=OrderStatus.RECEIVED, max_length=20)  # OrderStatus
    # Optimistic concurrency: every change bumps it; a stale writer is refused.
    row_version: int = 1

    sending_application: str = Field(default="", max_length=227)
    sending_facility: str = Field(default="", max_length=227)
    order_control: str = Field(default="NW", max_length=2)
    placer_order_number: str = Field(default="", max_length=199)
    filler_order_number: str = Field(default="", max_length=199)

    patient_mrn: str = Field(default="", max_length=100)
    patient_family_name: str = Field(default="", max_length=200)
    patient_given_name: str = Field(default="", max_length=200)
    patient_birth_date: date | None = None
    patient_sex: str = Field(default="", max_length=10)

    payer_company_id: str = Field(default="", max_length=100)
    payer_company_name: str = Field(default="", max_length=200)
    payer_plan_id: str = Field(default="", max_length=100)

    provider_npi: str = Field(default="", max_length=20)
    provider_family_name: str = Field(default="", max_length=200)
    provider_given_name: str = Field(default="", max_length=200)
    office_name: str = Field(default="", max_length=200)
    office_phone: str = Field(default="", max_length=100)
    office_fax: str = Field(default="", max_length=100)
    office_address: str = Field(default="", max_length=400)

    date_of_service: date | None = Field(default=None, index=True)
    ordered_at: datetime | None = Field(default=None, sa_type=UTCDateTime, nullable=True)
    priority: str = Field(default="", max_length=20)
    # Everything else read from the message (notes, answers, extra ids, reading remarks).
    details: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    error: str | None = Field(default=None, sa_column=Column(Text, nullable=True))

    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
    verified_at: datetime | None = Field(default=None, sa_type=UTCDateTime, nullable=True)
    released_at: datetime | None = Field(default=None, sa_type=UTCDateTime, nullable=True)
    delivered_at: datetime | None = Field(default=None, sa_type=UTCDateTime, nullable=True)

    # Clarification queue: who works the order, and when its next action is due (a first look
    # within FIRST_ACTION_HOURS of arrival, then each contact's follow-up date).
    assigned_to: str | None = Field(default=None, max_length=100)
    # When `assigned_to` last changed: "held by Ana since 10:12" when another coder claims it.
    assigned_at: datetime | None = Field(default=None, sa_type=UTCDateTime, nullable=True)
    # Search and sort keys (`labintake.search_keys`), written with the order: names without
    # case or accents, and the HL7 priority as a rank (0 STAT ... 3 routine).
    family_fold: str | None = Field(default=None, max_length=200)
    given_fold: str | None = Field(default=None, max_length=200)
    # `MBI|<mbi>` when the order carries a Medicare beneficiary identifier, else
    # `<sending facility>|<MRN>`; empty when it has neither (no history is kept for it).
    beneficiary_key: str = Field(
        default="", sa_column=Column(String(330), nullable=False, server_default="")
    )
    priority_rank: int = Field(
        default=3, sa_column=Column(SmallInteger, nullable=False, server_default="3")
    )
    due_at: datetime = Field(
        default_factory=lambda: first_action_due(utcnow()), sa_type=UTCDateTime
    )


class OrderTest(SQLModel, table=True):
    """A requested test: OBR-4 as sent and the catalog entry it resolved to."""

    __tablename__ = "order_test"

    id: int | None = Field(default=None, primary_key=True)
    order_id: int = Field(foreign_key="lab_order.id", index=True)
    seq: int
    location: str = Field(default="", max_length=40)
    sent_code: str = Field(default="", max_length=100)
    sent_text: str = Field(default="", max_length=400)
    sent_system: str = Field(default="", max_length=40)
    sent_alt_code: str = Field(default="", max_length=100)
    sent_alt_system: str = Field(default="", max_length=40)
    units: int = 1
    local_code: str | None = Field(default=None, max_length=40)
    loinc: str | None = Field(default=None, max_length=20)
    cpt: str | None = Field(default=None, max_length=10)
    modifiers: str = Field(default="", max_length=40)  # e.g. "GA" or "GA,QW"


class OrderDiagnosis(SQLModel, table=True):
    __tablename__ = "order_diagnosis"

    id: int | None = Field(default=None, primary_key=True)
    order_id: int = Field(foreign_key="lab_order.id", index=True)
    seq: int
    code: str = Field(max_length=20)
    text: str = Field(default="", max_length=400)
    system: str = Field(default="", max_length=40)
    location: str = Field(default="", max_length=40)
    # "sender" for what came in the message; "correction" for a coder's change.
    source: str = Field(default="sender", max_length=20)
    active: bool = True


class Verification(SQLModel, table=True):
    """One run of the rules over an order: which tables and rules produced which findings."""

    __tablename__ = "verification"

    id: int | None = Field(default=None, primary_key=True)
    order_id: int = Field(foreign_key="lab_order.id", index=True)
    at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
    table_versions: dict[str, Any] = Field(
        default_factory=dict, sa_column=Column(JSON, nullable=False)
    )
    rules_version: str = Field(default="", max_length=40)
    outcome: str = Field(max_length=20)  # verified | held


class Finding(SQLModel, table=True):
    __tablename__ = "finding"
    __table_args__ = (Index("ix_finding_order_state", "order_id", "state"),)

    id: int | None = Field(default=None, primary_key=True)
    order_id: int = Field(foreign_key="lab_order.id")
    verification_id: int = Field(foreign_key="verification.id", index=True)
    code: str = Field(max_length=40, index=True)
    severity: str = Field(max_length=10)
    location: str = Field(default="", max_length=60)
    message: str = Field(sa_column=Column(Text, nullable=False))
    clarify: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    test_seq: int | None = None
    # open -> resolved (a later verification no longer raises it) | overridden (with reason)
    state: str = Field(default=FindingState.OPEN, max_length=20)  # FindingState
    override_reason: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    reference: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))


class OrderEvent(SQLModel, table=True):
    """An order's history: who did what, when, with before/after."""

    __tablename__ = "order_event"
    # The dashboard's coder productivity: releases and rejects between two days.
    __table_args__ = (Index("ix_order_event_action_at", "action", "at"),)

    id: int | None = Field(default=None, primary_key=True)
    order_id: int = Field(foreign_key="lab_order.id", index=True)
    at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
    actor: str = Field(default="system", max_length=100)
    action: str = Field(max_length=60)
    detail: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
