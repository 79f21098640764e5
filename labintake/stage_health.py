"""Whether the background stages work: recorded by the worker process, read by the web app.

A stage that keeps failing (verification without usable code tables, a database refusing its
writes) used to show only in the worker's log while intake went on answering AA and
`/healthz` said "ok". Now each failure of a stage is written to `worker_stage` (the database
is what the worker process, the web app and every instance share), and cleared by the
stage's next success. `/healthz` says "degraded", naming the failing stages, while a row is
failing and fresh; `/metrics` counts the failures.

A failing stage is asked again every few seconds (`BackgroundWorkers.error_sleep`), and each
failure refreshes its row: a failing row left unrefreshed for `STALE_SECONDS` belongs to a
worker process that is gone, and is not counted.
"""

from __future__ import annotations

import logging
import os
import socket
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session, col

from labintake.db import utcnow
from labintake.models import WorkerStage

log = logging.getLogger(__name__)

STALE_SECONDS = 120.0
ERROR_TEXT_LIMIT = 500


def this_instance() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class StageHealth:
    """Writes the failures and recoveries of one worker process's stages."""

    def __init__(self, engine: Engine, instance: str | None = None) -> None:
        self.engine = engine
        self.instance = instance or this_instance()
        self._failing: set[str] = set()

    def failed(self, stage: str, exc: BaseException) -> None:
        error = f"{type(exc).__name__}: {exc}"[:ERROR_TEXT_LIMIT]
        now = utcnow()
        try:
            with Session(self.engine) as session, session.begin():
                row = session.execute(
                    select(WorkerStage).where(
                        col(WorkerStage.instance) == self.instance,
                        col(WorkerStage.stage) == stage,
                    )
                ).scalar_one_or_none()
                if row is None:
                    row = WorkerStage(instance=self.instance, stage=stage)
                    session.add(row)
                row.failing_since = row.failing_since or now
                row.consecutive_failures += 1
                row.failures += 1
                row.last_error = error
                row.updated_at = now
        except SQLAlchemyError:  # the database is what fails: /healthz says so itself
            log.warning("could not record the failure of stage %s", stage, exc_info=True)
            return
        self._failing.add(stage)

    def succeeded(self, stage: str) -> None:
        """The stage worked: clear its failing state (a write only when it was failing)."""
        if stage not in self._failing:
            return
        try:
            with Session(self.engine) as session, session.begin():
                session.execute(
                    update(WorkerStage)
                    .where(
                        col(WorkerStage.instance) == self.instance,
                        col(WorkerStage.stage) == stage,
                    )
                    .values(failing_since=None, consecutive_failures=0, updated_at=utcnow())
                )
        except SQLAlchemyError:
            log.warning("could not record the recovery of stage %s", stage, exc_info=True)
            return
        self._failing.discard(stage)


@dataclass(frozen=True, slots=True)
class FailingStage:
    stage: str
    instance: str
    since: datetime
    consecutive_failures: int
    last_error: str


def failing_stages(session: Session, now: datetime | None = None) -> list[FailingStage]:
    """Stages failing now (in worker processes seen within STALE_SECONDS), oldest first."""
    now = now or utcnow()
    rows = session.execute(
        select(WorkerStage)
        .where(
            col(WorkerStage.failing_since).is_not(None),
            col(WorkerStage.updated_at) >= now - timedelta(seconds=STALE_SECONDS),
        )
        .order_by(col(WorkerStage.failing_since))
    ).scalars()
    return [
        FailingStage(
            stage=row.stage,
            instance=row.instance,
            since=row.failing_since or now,
            consecutive_failures=row.consecutive_failures,
            last_error=row.last_error or "",
        )
        for row in rows
    ]


def failure_totals(session: Session) -> dict[str, int]:
    """Failures per stage, summed over the worker processes on record."""
    totals: dict[str, int] = {}
    for stage, failures in session.execute(
        select(col(WorkerStage.stage), col(WorkerStage.failures))
    ):
        totals[stage] = totals.get(stage, 0) + int(failures)
    return totals
