"""The inbound store: every HL7 message as received, committed before its ACK."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Column, Index, LargeBinary, Text, UniqueConstraint, text
from sqlmodel import Field, SQLModel

from labintake.db import UTCDateTime, utcnow
from labintake.statuses import MessageStatus


class InboundMessage(SQLModel, table=True):
    """An HL7 message exactly as received, stored before it is acknowledged."""

    __tablename__ = "inbound_message"
    __table_args__ = (
        # The duplicate key: who the connection proved the sender to be, what MSH-3/MSH-4/
        # MSH-10 say, and (for a later message reusing the control id with other content)
        # that content's digest; "" for the first message under a control id.
        UniqueConstraint(
            "sender_identity",
            "sending_application",
            "sending_facility",
            "control_id",
            "conflict_digest",
            name="uq_inbound_identity_sender_ctrl",
        ),
        Index("ix_inbound_status_id", "status", "id"),
        Index("ix_inbound_control_id", "control_id"),  # look-up by control id alone
        # The raw messages still kept, by arrival: the retention purge finds the oldest
        # without walking the table (purged rows leave the index).
        Index(
            "ix_inbound_raw_kept",
            "received_at",
            sqlite_where=text("raw IS NOT NULL"),
            postgresql_where=text("raw IS NOT NULL"),
        ),
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
    # What the connection proved: "interface:<name>" when it matched that interface's
    # [connection] binding, "unproven:<address>" when binding refused it, "" when no binding
    # was in force (see docs/security-model.md).
    sender_identity: str = Field(default="", max_length=120)
    # SHA-256 of the message with MSH-7 blanked and segment ends normalised (None: stored
    # before digests were kept).
    content_digest: str | None = Field(default=None, max_length=64)
    # "" for the first message under its key; the digest of a later message that reused the
    # control id with different content (a conflict, kept as rejected).
    conflict_digest: str = Field(default="", max_length=64)
    conflict_of_id: int | None = Field(default=None)
    interface: str | None = Field(default=None, max_length=100)
    raw: bytes | None = Field(default=None, sa_column=Column(LargeBinary, nullable=True))
    ack_code: str = Field(default="", max_length=2)
    ack: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    status: str = Field(default=MessageStatus.RECEIVED, max_length=20)  # MessageStatus
    error: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    read_at: datetime | None = Field(default=None, sa_type=UTCDateTime, nullable=True)
    read_attempts: int = 0
    raw_purged_at: datetime | None = Field(default=None, sa_type=UTCDateTime, nullable=True)
