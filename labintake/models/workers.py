"""How each background worker stage is doing, written by the worker process and read by the
web app (`/healthz`, `/metrics`): the database is what both processes, and every instance,
share."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Column, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

from labintake.db import UTCDateTime, utcnow


class WorkerStage(SQLModel, table=True):
    """One stage (reader, verifier, release...) of one worker process."""

    __tablename__ = "worker_stage"
    __table_args__ = (UniqueConstraint("instance", "stage", name="uq_worker_stage"),)

    id: int | None = Field(default=None, primary_key=True)
    instance: str = Field(max_length=200)  # "host:pid" of the worker process
    stage: str = Field(max_length=60)
    failing_since: datetime | None = Field(default=None, sa_type=UTCDateTime, nullable=True)
    consecutive_failures: int = 0
    failures: int = 0  # since the worker process started
    last_error: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
