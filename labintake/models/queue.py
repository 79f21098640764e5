"""The clarification queue's own records: contacts with ordering offices, queries to them."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import JSON, Column, Text
from sqlmodel import Field, SQLModel

from labintake.db import UTCDateTime, utcnow
from labintake.statuses import QueryStatus


class OfficeContact(SQLModel, table=True):
    """One attempt to reach the ordering office, and what it said, in its own words."""

    __tablename__ = "office_contact"

    id: int | None = Field(default=None, primary_key=True)
    order_id: int = Field(foreign_key="lab_order.id", index=True)
    at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
    actor: str = Field(max_length=100)
    channel: str = Field(max_length=20)  # ContactChannel
    outcome: str = Field(max_length=30)  # ContactOutcome
    person: str = Field(default="", max_length=200)  # who answered at the office
    answer: str = Field(default="", sa_column=Column(Text, nullable=False))
    follow_up_on: date | None = None
    query_id: int | None = Field(default=None, foreign_key="office_query.id")


class OfficeQuery(SQLModel, table=True):
    """A compliant query to the ordering provider: indicators cited, no code proposed."""

    __tablename__ = "office_query"

    id: int | None = Field(default=None, primary_key=True)
    order_id: int = Field(foreign_key="lab_order.id", index=True)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
    actor: str = Field(max_length=100)
    status: str = Field(default=QueryStatus.OPEN, max_length=20)  # QueryStatus
    question: str = Field(sa_column=Column(Text, nullable=False))  # the questions, a line each
    indicators: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    choices: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    closed_at: datetime | None = Field(default=None, sa_type=UTCDateTime, nullable=True)
    # Why it closed: answered, released, rejected, cancelled (order states) or by a coder.
    closed_reason: str = Field(default="", max_length=40)
    # The tests ordered, as the order names them.
    tests: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    # One entry per finding asked about: {"finding", "about", "text", "choices"}.
    questions: list[dict[str, Any]] = Field(
        default_factory=list, sa_column=Column(JSON, nullable=False)
    )
    # "code|location|subject" of the findings asked about: the same open query is not written
    # twice for the same findings.
    finding_keys: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    respond_by: date | None = None
    detail: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))


class OrderNote(SQLModel, table=True):
    """An internal note on an order, for the lab's own people: never sent to the office or
    the LIS."""

    __tablename__ = "order_note"

    id: int | None = Field(default=None, primary_key=True)
    order_id: int = Field(foreign_key="lab_order.id", index=True)
    at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
    author: str = Field(max_length=100)
    text: str = Field(sa_column=Column(Text, nullable=False))
