"""A stored message's history outside its orders: read errors and reprocessing, with who did it."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Column
from sqlmodel import Field, SQLModel

from labintake.db import UTCDateTime, utcnow


class MessageEvent(SQLModel, table=True):
    """One thing that happened to an inbound message after intake (read_error, reprocessed)."""

    __tablename__ = "message_event"

    id: int | None = Field(default=None, primary_key=True)
    message_id: int = Field(foreign_key="inbound_message.id", index=True)
    at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
    actor: str = Field(default="system", max_length=100)
    action: str = Field(max_length=60)
    detail: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
