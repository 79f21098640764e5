"""The outbox's delivery state in the database: claiming due messages, giving claims back,
dead letters put back in line (what the LIS answered is recorded by
`labintake.release.outcomes`).

Claims are leases (`claimed_by`, `claimed_until`): a sender that dies leaves its claim to
expire and another sender takes the message over, with the same control id. A message is
due when it is pending, its next attempt time has come, and no earlier pending message with
the same sequence key (one patient's orders) waits before it.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, text, update
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from labintake import audit, lifecycle
from labintake.db import session_scope, utcnow
from labintake.errors import NotFoundError, WorkflowError
from labintake.models.release import OutboxEntry, OutboxStatus
from labintake.models.tables import table_of
from labintake.statuses import DeliveryOutcome

OUTBOX = table_of(OutboxEntry)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_attempts: int = 20
    base_seconds: float = 2.0
    cap_seconds: float = 300.0

    def step(self, attempts: int) -> float:
        """The backoff step after `attempts` failures: doubling from the base, at most the cap."""
        return float(min(self.cap_seconds, self.base_seconds * 2.0 ** max(0, attempts - 1)))

    def delay(self, attempts: int) -> float:
        """Exponential backoff with jitter: half the step fixed, half random."""
        step = self.step(attempts)
        return step / 2 + random.uniform(0, step / 2)


@dataclass(frozen=True, slots=True)
class Outcome:
    """What happened to one claimed message."""

    entry_id: int
    kind: DeliveryOutcome
    ack_code: str = ""
    text: str = ""


# One claim query for both databases. A message is due when it is the lowest pending id of its
# sequence key: a scalar subquery that both planners run as one probe of ix_outbox_sequence per
# candidate row, whatever the table's statistics say. (It was a NOT EXISTS anti-join; with no
# statistics yet, as right after a burst, PostgreSQL planned it as a nested loop of bitmap
# scans over every pending row for every pending row: 140 s for one claim on a backlog of
# 6,200, so delivery fell to a few dozen messages a second and then stopped.)
#
# Most overdue first (ties by id): the order of ix_outbox_due (status, next_attempt_at), so
# the walk stops at the `limit`-th due message. Ordered by id alone, every due message was
# read and sorted for each claim: with 100,000 pending, as after an outage of the LIS, 0.4 s
# a claim instead of 1 ms. Which messages go in one claim is all this changes: one patient's
# orders still go in release order (the lowest pending id of its sequence key goes first).
_DUE = """
SELECT o.id FROM outbox o
WHERE o.destination = :destination AND o.status = 'pending' AND o.next_attempt_at <= :now
  AND (o.claimed_until IS NULL OR o.claimed_until < :now)
  AND o.id = (
    SELECT min(p.id) FROM outbox p
    WHERE p.destination = o.destination AND p.sequence_key = o.sequence_key
      AND p.status = 'pending')
ORDER BY o.next_attempt_at, o.id
LIMIT :limit
"""


@dataclass(frozen=True, slots=True)
class Claimed:
    """One claimed message: what the sender needs to send it."""

    id: int
    control_id: str
    message: bytes
    order_id: int = 0
    kind: str = ""
    attempts: int = 0  # before this one


# What a claim returns of each message: Claimed's fields, and when it was due (the order).
_CLAIMED_COLUMNS = "id, control_id, message, next_attempt_at, order_id, kind, attempts"


def _db_time(engine: Engine, value: datetime) -> datetime:
    """SQLite stores UTC naive (see UTCDateTime); raw SQL must compare like with like."""
    return value.replace(tzinfo=None) if engine.dialect.name == "sqlite" else value


def claim_due(
    engine: Engine,
    token: str,
    *,
    destination: str = "lis",
    limit: int = 200,
    lease_seconds: float = 120.0,
    now: datetime | None = None,
) -> list[Claimed]:
    """Claim up to `limit` due messages for `token` and return them, most overdue first (then
    by id). `now` is the clock's time (default: the system clock).

    On PostgreSQL, one statement: the due rows are chosen once, in a materialized CTE: as a
    plain ``IN (subquery)`` the planner may run the subquery again for each row it updates,
    and each run, no longer seeing the rows just claimed, adds the next `limit` (with no
    table statistics, one claim of 200 took 2,700 rows on PostgreSQL). On SQLite, a read
    then a claim by id (`_claim_on_sqlite`)."""
    now = now or utcnow()
    until = now + timedelta(seconds=lease_seconds)
    due = _DUE
    if engine.dialect.name == "postgresql":
        due += " FOR UPDATE OF o SKIP LOCKED"
    params = {
        "destination": destination,
        "now": _db_time(engine, now),
        "limit": limit,
        "token": token,
        "until": _db_time(engine, until),
    }
    if engine.dialect.name == "sqlite":
        rows = _claim_on_sqlite(engine, params)
    else:
        with engine.begin() as conn:
            rows = list(
                conn.execute(
                    text(
                        f"WITH due AS MATERIALIZED ({due}) "  # noqa: S608
                        f"UPDATE outbox SET claimed_by = :token, claimed_until = :until "
                        f"WHERE id IN (SELECT id FROM due) AND status = 'pending' "
                        f"AND (claimed_until IS NULL OR claimed_until < :now) "
                        f"RETURNING {_CLAIMED_COLUMNS}"
                    ),
                    params,
                ).all()
            )
    # Most overdue first, as chosen: when the destination cannot be reached, the attempt the
    # round counts falls on the message that waited longest, not always on the lowest id.
    rows.sort(key=lambda row: (row[3], row[0]))
    return [
        Claimed(int(i), str(c), bytes(m), int(order), str(kind), int(attempts))
        for i, c, m, _, order, kind, attempts in rows
    ]


# The claim proper, by primary key. `+status`: SQLite's way to keep a term from choosing the
# index (https://sqlite.org/optoverview.html, "Disqualifying WHERE clause terms"); without
# it, having no statistics, SQLite walks ix_outbox_due over every pending message.
_CLAIM_SQLITE = text(
    "UPDATE outbox SET claimed_by = :token, claimed_until = :until "  # noqa: S608 (constants)
    "WHERE id IN :ids AND +status = 'pending' "
    "AND (claimed_until IS NULL OR claimed_until < :now) "
    f"RETURNING {_CLAIMED_COLUMNS}"
).bindparams(bindparam("ids", expanding=True))


def _claim_on_sqlite(engine: Engine, params: dict[str, Any]) -> list[Any]:
    """On SQLite, the due messages are chosen in a read, then claimed by id: a write
    statement holds the database's one write lock from its start, and choosing reads pending
    messages (when it read them all, 0.2-0.4 s a claim with 100,000 pending, as during an
    outage of the LIS, every ACK of intake waited that long). The claim re-checks status and
    lease, so a message claimed or sent meanwhile is not taken twice."""
    with engine.connect() as conn:  # WAL: a read takes no lock that intake waits for
        ids = list(conn.execute(text(_DUE), params).scalars())
    if not ids:
        return []
    with engine.begin() as conn:
        return list(conn.execute(_CLAIM_SQLITE, {**params, "ids": ids}).all())


def release_claims(engine: Engine, token: str, entry_ids: Sequence[int]) -> None:
    """Give back claims on messages this sender did not try (another may take them now)."""
    if not entry_ids:
        return
    with session_scope(engine) as session:
        session.execute(
            update(OutboxEntry)
            .where(col(OutboxEntry.id).in_(entry_ids), col(OutboxEntry.claimed_by) == token)
            .values(claimed_by=None, claimed_until=None)
        )


def resend_dead_letter(session: Session, entry_id: int, actor: str) -> OutboxEntry:
    """Put a dead letter back in line, same control id, attempts counted afresh."""
    entry = session.get(OutboxEntry, entry_id)
    if entry is None:
        raise NotFoundError(f"no outbound message {entry_id}")
    if entry.status != OutboxStatus.DEAD:
        raise WorkflowError(f"message {entry.control_id} is {entry.status}, not a dead letter")
    now = utcnow()
    audit.record(
        session,
        actor,
        "outbox.resend",
        order_id=entry.order_id,
        before={"status": entry.status, "attempts": entry.attempts, "error": entry.last_error},
        after={"status": OutboxStatus.PENDING, "control_id": entry.control_id},
    )
    entry.status = OutboxStatus.PENDING
    entry.attempts = 0
    entry.next_attempt_at = now
    entry.dead_at = None
    entry.updated_at = now
    session.add(entry)
    lifecycle.record_event(
        session,
        entry.order_id,
        "resent",
        {"control_id": entry.control_id, "last_error": entry.last_error},
        actor=actor,
        now=now,
    )
    session.flush()
    return entry


def list_outbox(session: Session, status: str, limit: int = 500) -> list[OutboxEntry]:
    """Outbound messages in `status` (or "failing": pending after at least one attempt)."""
    query = select(OutboxEntry)
    if status == "failing":
        query = query.where(
            OutboxEntry.status == OutboxStatus.PENDING, col(OutboxEntry.attempts) > 0
        )
    else:
        query = query.where(OutboxEntry.status == status)
    return list(session.exec(query.order_by(col(OutboxEntry.id).desc()).limit(limit)))
