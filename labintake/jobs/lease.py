"""Job leases: with several instances on one database, one job runs on one instance at a time.

A lease is a row per job name with an owner and an expiry. Taking it is one conditional
write, so two instances cannot both hold it; an instance that dies mid-job stops renewing
and its lease expires after `ttl_seconds`. Each job keeps its work in one transaction (or
makes it idempotent), so a run cut short leaves nothing half done. Time comes from a
:class:`~labintake.clock.Clock` (tests move theirs past an expiry instead of waiting).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TypeVar

from sqlalchemy import delete, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import col

from labintake.clock import SYSTEM_CLOCK, Clock
from labintake.db import session_scope, utcnow
from labintake.models.release import JobLease

T = TypeVar("T")


def acquire(
    engine: Engine,
    name: str,
    owner: str,
    ttl_seconds: float,
    *,
    renew: bool = True,
    now: datetime | None = None,
) -> bool:
    """Take (or renew) the lease on `name` for `owner`; False when someone else holds it.
    Without `renew`, a live lease is never taken, not even by its own owner (for work that
    must not start twice, whoever asks). `now` is the clock's time (default: the system
    clock)."""
    now = now or utcnow()
    expires = now + timedelta(seconds=ttl_seconds)
    free = col(JobLease.expires_at) < now
    takeable = (free | (col(JobLease.owner) == owner)) if renew else free
    with session_scope(engine) as session:
        result = session.execute(
            update(JobLease)
            .where(col(JobLease.name) == name, takeable)
            .values(owner=owner, acquired_at=now, expires_at=expires)
        )
        if result.rowcount == 1:  # type: ignore[attr-defined]
            return True
    try:
        with session_scope(engine) as session:
            session.add(JobLease(name=name, owner=owner, acquired_at=now, expires_at=expires))
    except IntegrityError:
        return False
    return True


def release(engine: Engine, name: str, owner: str, *, now: datetime | None = None) -> None:
    """Give the lease back early (it would expire anyway)."""
    with session_scope(engine) as session:
        session.execute(
            update(JobLease)
            .where(col(JobLease.name) == name, col(JobLease.owner) == owner)
            .values(expires_at=now or utcnow())
        )


def drop(engine: Engine, name: str, owner: str) -> None:
    """Delete the lease row of `name` if `owner` still holds it (for one-off names, such as
    one message's, whose rows would otherwise pile up)."""
    with session_scope(engine) as session:
        session.execute(
            delete(JobLease).where(col(JobLease.name) == name, col(JobLease.owner) == owner)
        )


def run_exclusive(
    engine: Engine, name: str, owner: str, work: Callable[[], T], ttl_seconds: float = 300.0
) -> tuple[bool, T | None]:
    """Run `work` if this instance gets the lease on `name`: (ran, result)."""
    if not acquire(engine, name, owner, ttl_seconds):
        return False, None
    try:
        return True, work()
    finally:
        release(engine, name, owner)


class HeldLease:
    """A lease kept across the consecutive runs of a continuous worker.

    Taking and giving back a lease is a write each; a worker that runs many short batches in
    a row holds it instead: taken on the first run, renewed once half its time has passed,
    given back when the worker finds nothing to do. An instance that dies stops renewing and
    the lease expires after `ttl_seconds`, as with :func:`run_exclusive`.
    """

    def __init__(
        self,
        engine: Engine,
        name: str,
        owner: str,
        ttl_seconds: float,
        *,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.engine = engine
        self.name = name
        self.owner = owner
        self.ttl_seconds = ttl_seconds
        self.clock = clock
        self._renew_at: float | None = None  # clock.monotonic(); None when not held

    @property
    def held(self) -> bool:
        return self._renew_at is not None

    def hold(self) -> bool:
        """True when this owner holds the lease (taking or renewing it when due)."""
        now = self.clock.monotonic()
        if self._renew_at is not None and now < self._renew_at:
            return True
        if acquire(self.engine, self.name, self.owner, self.ttl_seconds, now=self.clock.now()):
            self._renew_at = now + self.ttl_seconds / 2
            return True
        self._renew_at = None
        return False

    def give_back(self) -> None:
        if self.held:
            self._renew_at = None
            release(self.engine, self.name, self.owner, now=self.clock.now())
