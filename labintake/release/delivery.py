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
from typing import Any

from sqlalchemy import bindparam, insert, text, update
from sqlalchemy import select as select_rows
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from labintake import audit, lifecycle
from labintake.db import session_scope, utcnow
from labintake.errors import NotFoundError, WorkflowError
from labintake.lifecycle import OrderEventKind
from labintake.models.orders import Finding, Verification
from labintake.models.release import Notification, OutboxEntry, OutboxKind, OutboxStatus
from labintake.models.tables import table_of
from labintake.statuses import DeliveryOutcome, FindingCode, FindingState, OrderStatus, Severity

OUTBOX = table_of(OutboxEntry)
VERIFICATIONS = table_of(Verification)
FINDINGS = table_of(Finding)
NOTIFICATIONS = table_of(Notification)


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


def _orders_refused(
    session: Session, refused: Sequence[tuple[int, str, str, str]], now: datetime
) -> None:
    """The LIS said AE/AR: the orders go back to the coders, held with the LIS's words.
    `refused`: (order id, control id, ACK code, reason), one per order, in the order the
    answers came. Set-based: the orders still released move (one UPDATE, one insert of
    events), then one verification and one finding each (two inserts)."""
    by_order: dict[int, tuple[str, str, str]] = {}
    for order_id, control_id, code, reason in refused:
        by_order.setdefault(order_id, (control_id, code, reason))  # the first answer holds it
    moved = set(
        lifecycle.transition_many(
            session,
            list(by_order),
            OrderStatus.HELD,
            OrderEventKind.LIS_REFUSED,
            detail={
                order_id: {
                    "before": {"status": OrderStatus.RELEASED},
                    "after": {"status": OrderStatus.HELD},
                    "control_id": control_id,
                    "ack_code": code,
                    "reason": reason,
                }
                for order_id, (control_id, code, reason) in by_order.items()
            },
            sources=[OrderStatus.RELEASED],  # no longer released (cancelled): nothing to hold
            now=now,
        )
    )
    held = [order_id for order_id in by_order if order_id in moved]
    if not held:
        return
    conn = session.connection()
    verification_of = dict(
        (order_id, verification_id)
        for verification_id, order_id in conn.execute(
            insert(VERIFICATIONS).returning(
                VERIFICATIONS.c.id, VERIFICATIONS.c.order_id, sort_by_parameter_order=True
            ),
            [
                {
                    "order_id": order_id,
                    "at": now,
                    "table_versions": {},
                    "rules_version": "lis-ack",
                    "outcome": OrderStatus.HELD,
                }
                for order_id in held
            ],
        )
    )
    findings = []
    for order_id in held:
        control_id, code, reason = by_order[order_id]
        findings.append(
            {
                "order_id": order_id,
                "verification_id": verification_of[order_id],
                "code": FindingCode.LIS_REJECTED,
                "severity": Severity.HOLD,
                "location": "MSA",
                "message": f"The LIS answered {code}: {reason or 'no reason given'}",
                "clarify": None,
                "test_seq": None,
                "state": FindingState.OPEN,
                "override_reason": None,
                "reference": {"control_id": control_id, "ack_code": code},
            }
        )
    conn.execute(insert(FINDINGS), findings)


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


def _record_failures(
    session: Session,
    token: str,
    outcomes: Sequence[Outcome],
    policy: RetryPolicy,
    now: datetime,
) -> None:
    """Messages given back, refused or to be retried: their rows read and locked in one
    SELECT, then one executemany UPDATE per kind of change; refused releases put their
    orders back on hold, dead letters notify the managers (one insert)."""
    conn = session.connection()
    entries = {
        row.id: row
        for row in conn.execute(
            select_rows(
                OUTBOX.c.id,
                OUTBOX.c.order_id,
                OUTBOX.c.kind,
                OUTBOX.c.control_id,
                OUTBOX.c.destination,
                OUTBOX.c.attempts,
            )
            .where(OUTBOX.c.id.in_([o.entry_id for o in outcomes]), OUTBOX.c.claimed_by == token)
            .with_for_update()
        )
    }
    given_back: list[dict[str, Any]] = []
    refused: list[dict[str, Any]] = []
    retried: list[dict[str, Any]] = []
    dead: list[dict[str, Any]] = []
    notices: list[dict[str, Any]] = []
    refused_orders: list[tuple[int, str, str, str]] = []
    for outcome in outcomes:  # in the order they came, as the backoff draws its jitter
        entry = entries.pop(outcome.entry_id, None)
        if entry is None:  # no longer ours (or already recorded in this call)
            continue
        if outcome.kind is DeliveryOutcome.SKIPPED:
            given_back.append({"entry_id": entry.id})
            continue
        attempts = entry.attempts + 1
        if outcome.kind is DeliveryOutcome.REFUSED:
            refused.append(
                {
                    "entry_id": entry.id,
                    "entry_attempts": attempts,
                    "entry_ack_code": outcome.ack_code,
                    "entry_error": outcome.text or f"answered {outcome.ack_code}",
                }
            )
            if entry.kind == OutboxKind.RELEASE:
                refused_orders.append(
                    (entry.order_id, entry.control_id, outcome.ack_code, outcome.text)
                )
        elif attempts >= policy.max_attempts:
            dead.append(
                {"entry_id": entry.id, "entry_attempts": attempts, "entry_error": outcome.text}
            )
            notices.append(
                {
                    "kind": "dead_letter",
                    "recipient_role": "manager",
                    "order_id": entry.order_id,
                    "text": (
                        f"Message {entry.control_id} to {entry.destination} gave up "
                        f"after {attempts} attempts: {outcome.text}"
                    ),
                    "detail": {},
                    "dedupe_key": f"dead:{entry.control_id}:{attempts}",
                    "created_at": now,
                    "read_at": None,
                }
            )
        else:
            retried.append(
                {
                    "entry_id": entry.id,
                    "entry_attempts": attempts,
                    "entry_error": outcome.text,
                    "entry_next": now + timedelta(seconds=policy.delay(attempts)),
                }
            )
    released: dict[str, Any] = {"claimed_by": None, "claimed_until": None, "updated_at": now}
    by_id = OUTBOX.c.id == bindparam("entry_id")
    tried: dict[str, Any] = {**released, "attempts": bindparam("entry_attempts")}
    if given_back:
        conn.execute(update(OUTBOX).where(by_id).values(**released), given_back)
    if refused:
        conn.execute(
            update(OUTBOX)
            .where(by_id)
            .values(
                **tried,
                status=OutboxStatus.REFUSED,
                ack_code=bindparam("entry_ack_code"),
                last_error=bindparam("entry_error"),
            ),
            refused,
        )
    if retried:
        conn.execute(
            update(OUTBOX)
            .where(by_id)
            .values(
                **tried,
                last_error=bindparam("entry_error"),
                next_attempt_at=bindparam("entry_next"),
            ),
            retried,
        )
    if dead:
        conn.execute(
            update(OUTBOX)
            .where(by_id)
            .values(
                **tried, status=OutboxStatus.DEAD, dead_at=now, last_error=bindparam("entry_error")
            ),
            dead,
        )
        conn.execute(insert(NOTIFICATIONS), notices)
    if refused_orders:
        _orders_refused(session, refused_orders, now)


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
        failed = [o for o in outcomes if o.kind is not DeliveryOutcome.DELIVERED]
        if failed:
            _record_failures(session, token, failed, policy, now)
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
