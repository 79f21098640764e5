"""The outbox's delivery state in the database: claiming due messages and recording outcomes.

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

from sqlalchemy import Table, text, update
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from labintake import audit, lifecycle
from labintake.db import session_scope, utcnow
from labintake.errors import ConcurrentChangeError, NotFoundError, WorkflowError
from labintake.lifecycle import OrderEventKind
from labintake.models.orders import Finding, Order, Verification
from labintake.models.release import Notification, OutboxEntry, OutboxKind, OutboxStatus
from labintake.statuses import DeliveryOutcome, FindingCode, OrderStatus, Severity

OUTBOX: Table = OutboxEntry.__table__  # type: ignore[attr-defined]


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_attempts: int = 20
    base_seconds: float = 2.0
    cap_seconds: float = 300.0

    def delay(self, attempts: int) -> float:
        """Exponential backoff with jitter: half the step fixed, half random."""
        step: float = min(self.cap_seconds, self.base_seconds * 2.0 ** max(0, attempts - 1))
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
_DUE = """
SELECT o.id FROM outbox o
WHERE o.destination = :destination AND o.status = 'pending' AND o.next_attempt_at <= :now
  AND (o.claimed_until IS NULL OR o.claimed_until < :now)
  AND o.id = (
    SELECT min(p.id) FROM outbox p
    WHERE p.destination = o.destination AND p.sequence_key = o.sequence_key
      AND p.status = 'pending')
ORDER BY o.id
LIMIT :limit
"""


@dataclass(frozen=True, slots=True)
class Claimed:
    """One claimed message: what the sender needs to send it."""

    id: int
    control_id: str
    message: bytes


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
    """Claim up to `limit` due messages for `token` (one statement, one commit) and return
    them, oldest first. `now` is the clock's time (default: the system clock).

    The due rows are chosen once, in a materialized CTE: as a plain ``IN (subquery)`` the
    planner may run the subquery again for each row it updates, and each run, no longer
    seeing the rows just claimed, adds the next `limit` (with no table statistics, one claim
    of 200 took 2,700 rows on PostgreSQL)."""
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
    with engine.begin() as conn:
        rows = conn.execute(
            text(
                f"WITH due AS MATERIALIZED ({due}) "  # noqa: S608
                f"UPDATE outbox SET claimed_by = :token, claimed_until = :until "
                f"WHERE id IN (SELECT id FROM due) AND status = 'pending' "
                f"AND (claimed_until IS NULL OR claimed_until < :now) "
                f"RETURNING id, control_id, message"
            ),
            params,
        ).all()
    return sorted((Claimed(int(i), str(c), bytes(m)) for i, c, m in rows), key=lambda e: e.id)


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


def _order_refused(session: Session, entry: OutboxEntry, reason: str, now: datetime) -> None:
    """The LIS said AE/AR: the order goes back to the coders, held with the LIS's words."""
    order = session.get(Order, entry.order_id)
    if order is None or order.status != OrderStatus.RELEASED:
        return
    try:
        lifecycle.transition(
            session,
            order,
            OrderStatus.HELD,
            OrderEventKind.LIS_REFUSED,
            detail={
                "before": {"status": OrderStatus.RELEASED},
                "after": {"status": OrderStatus.HELD},
                "control_id": entry.control_id,
                "ack_code": entry.ack_code,
                "reason": reason,
            },
            now=now,
        )
    except ConcurrentChangeError:
        return  # no longer released (cancelled meanwhile): nothing to hold
    verification = Verification(
        order_id=entry.order_id, at=now, rules_version="lis-ack", outcome=OrderStatus.HELD
    )
    session.add(verification)
    session.flush()
    assert verification.id is not None
    session.add(
        Finding(
            order_id=entry.order_id,
            verification_id=verification.id,
            code=FindingCode.LIS_REJECTED,
            severity=Severity.HOLD,
            location="MSA",
            message=f"The LIS answered {entry.ack_code}: {reason or 'no reason given'}",
            reference={"control_id": entry.control_id, "ack_code": entry.ack_code},
        )
    )


def _record_deliveries(
    session: Session, token: str, outcomes: Sequence[Outcome], now: datetime
) -> int:
    """Acknowledged messages, in a few set-based statements (the hot path of delivery): a
    Core UPDATE ... RETURNING per ACK code on the outbox, then the orders' state changes."""
    delivered = 0
    by_code: dict[str, list[int]] = {}
    for outcome in outcomes:
        by_code.setdefault(outcome.ack_code, []).append(outcome.entry_id)
    for ack_code, ids in by_code.items():
        rows = (
            session.connection()
            .execute(
                update(OUTBOX)
                .where(OUTBOX.c.id.in_(ids), OUTBOX.c.claimed_by == token)
                .values(
                    status=OutboxStatus.DELIVERED,
                    ack_code=ack_code,
                    delivered_at=now,
                    updated_at=now,
                    last_error=None,
                    claimed_by=None,
                    claimed_until=None,
                    attempts=OUTBOX.c.attempts + 1,
                )
                .returning(OUTBOX.c.order_id, OUTBOX.c.kind, OUTBOX.c.control_id, OUTBOX.c.attempts)
            )
            .all()
        )
        delivered += len(rows)
        releases = {
            order_id: (control_id, attempts)
            for order_id, kind, control_id, attempts in rows
            if kind == OutboxKind.RELEASE
        }
        if not releases:
            continue
        lifecycle.transition_many(
            session,
            list(releases),
            OrderStatus.DELIVERED,
            OrderEventKind.DELIVERED,
            detail={
                order_id: {
                    "before": {"status": OrderStatus.RELEASED},
                    "after": {"status": OrderStatus.DELIVERED},
                    "control_id": control_id,
                    "ack_code": ack_code,
                    "attempts": attempts,
                }
                for order_id, (control_id, attempts) in releases.items()
            },
            values={"delivered_at": now},
            now=now,
        )
    return delivered


def record_outcomes(
    engine: Engine,
    token: str,
    outcomes: Sequence[Outcome],
    policy: RetryPolicy,
    *,
    now: datetime | None = None,
) -> int:
    """Write what happened to claimed messages, in one transaction; returns deliveries.

    A message whose claim is no longer ours (it expired and another sender took it) is left
    to that sender. `now` is the clock's time (default: the system clock).
    """
    now = now or utcnow()
    with session_scope(engine) as session:
        delivered = _record_deliveries(
            session, token, [o for o in outcomes if o.kind is DeliveryOutcome.DELIVERED], now
        )
        for outcome in outcomes:
            if outcome.kind is DeliveryOutcome.DELIVERED:
                continue
            entry = session.get(OutboxEntry, outcome.entry_id, with_for_update=True)
            if entry is None or entry.claimed_by != token:
                continue
            entry.claimed_by = None
            entry.claimed_until = None
            entry.updated_at = now
            if outcome.kind is DeliveryOutcome.SKIPPED:
                session.add(entry)
                continue
            entry.attempts += 1
            if outcome.kind is DeliveryOutcome.REFUSED:
                entry.status = OutboxStatus.REFUSED
                entry.ack_code = outcome.ack_code
                entry.last_error = outcome.text or f"answered {outcome.ack_code}"
                if entry.kind == OutboxKind.RELEASE:
                    _order_refused(session, entry, outcome.text, now)
            else:
                entry.last_error = outcome.text
                if entry.attempts >= policy.max_attempts:
                    entry.status = OutboxStatus.DEAD
                    entry.dead_at = now
                    session.add(
                        Notification(
                            kind="dead_letter",
                            recipient_role="manager",
                            order_id=entry.order_id,
                            text=(
                                f"Message {entry.control_id} to {entry.destination} gave up "
                                f"after {entry.attempts} attempts: {outcome.text}"
                            ),
                            dedupe_key=f"dead:{entry.control_id}:{entry.attempts}",
                            created_at=now,
                        )
                    )
                else:
                    entry.next_attempt_at = now + timedelta(seconds=policy.delay(entry.attempts))
            session.add(entry)
    return delivered


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
