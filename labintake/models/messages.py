"""The inbound store: every HL7 message as received, committed before its ACK."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Column, Index, LargeBinary, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

from labintake.db import UTCDateTime, utcnow
from labintake.statuses import MessageStatus


class InboundMessage(SQLModel, table=True):
    """An HL7 message exactly as received, stored before it is acknowledged."""

    __tablename__ = "inbound_message"
    __table_args__ = (
        UniqueConstraint(
            "sending_application", "sending_facility", "control_id", name="uq_inbound_sender_ctrl"
        ),
        Index("ix_inbound_status_id", "status", "id"),
        Index("ix_inbound_control_id", "control_id"),  # look-up by control id alone
    )

    id: int | None = Field(default=None, primary_key=True)
    received_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
    sending_application: str = Field(default="", max_length=227)
    sending_facility: str = Field(default="", max_length=227)
    receiving_application: str = Field(default="", max_length=227)
    receiving_facility: str = Field(default="", max_length=227)
    control_id: str = Field(max_length=199)
    message_type: str = Field(default="", max_length=40)
    version: str = Field(default="", max_length=20)
    charset: str = Field(default="", max_length=40)  # MSH-18 as declared
    peer: str = Field(default="", max_length=200)
    interface: str | None = Field(default=None, max_length=100)
    raw: bytes | None = Field(default=None, sa_column=Column(LargeBinary, nullable=True))
    ack_code: str = Field(default="", max_length=2)
    ack: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    status: str = Field(default=MessageStatus.RECEIVED.value, max_length=20)  # MessageStatus
    error: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    read_at: datetime | None = Field(default=None, sa_type=UTCDateTime, nullable=True)
    read_attempts: int = 0
    raw_purged_at: datetime | None = Field(default=None, sa_type=UTCDateTime, nullable=True)
