"""Recording what the LIS answered for claimed outbox messages, in one transaction per
group of outcomes (`record_outcomes`, called by the sender every `commit_every` messages).

Delivered messages move their orders to delivered, set-based; messages given back, refused
or to be retried are updated by kind of change; a refused release puts its order back on
hold with the LIS's words as a finding; a message out of attempts becomes a dead letter and
notifies the managers. A message whose claim is no longer this sender's (it expired and
another sender took it) is left to that sender.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, insert, update
from sqlalchemy import select as select_rows
from sqlalchemy.engine import Dialect, Engine
from sqlmodel import Session

from labintake import lifecycle
from labintake.db import session_scope, utcnow
from labintake.lifecycle import OrderEventKind
from labintake.models.orders import Finding, Verification
from labintake.models.release import Notification, OutboxKind, OutboxStatus
from labintake.models.tables import Bound, table_of
from labintake.release.delivery import OUTBOX, Claimed, Outcome, RetryPolicy
from labintake.statuses import DeliveryOutcome, FindingCode, FindingState, OrderStatus, Severity

VERIFICATIONS = table_of(Verification)
FINDINGS = table_of(Finding)
NOTIFICATIONS = table_of(Notification)


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
            # one row per order, matched by order id: any order of the rows returned will do
            insert(VERIFICATIONS).returning(VERIFICATIONS.c.id, VERIFICATIONS.c.order_id),
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


def _delivered_detail(control_id: str, ack_code: str, attempts: int) -> dict[str, Any]:
    return {
        "before": {"status": OrderStatus.RELEASED},
        "after": {"status": OrderStatus.DELIVERED},
        "control_id": control_id,
        "ack_code": ack_code,
        "attempts": attempts,
    }


@dataclass(frozen=True, slots=True)
class _BoundDeliveries:
    """The "delivered" events of a round's releases, bound before its transaction from what
    the claim returned (`lifecycle.bind_events`), and the details they carry, by order id."""

    details: dict[int, dict[str, Any]]
    events: Bound


def _bind_deliveries(
    dialect: Dialect, claims: Mapping[int, Claimed], outcomes: Sequence[Outcome], now: datetime
) -> _BoundDeliveries:
    details: dict[int, dict[str, Any]] = {}
    for outcome in outcomes:
        claim = claims.get(outcome.entry_id)
        if claim is not None and claim.kind == OutboxKind.RELEASE:
            details[claim.order_id] = _delivered_detail(
                claim.control_id, outcome.ack_code, claim.attempts + 1
            )
    events = lifecycle.bind_events(dialect, details, OrderEventKind.DELIVERED, now=now)
    return _BoundDeliveries(details, events)


def _record_deliveries(
    session: Session,
    token: str,
    outcomes: Sequence[Outcome],
    now: datetime,
    bound: _BoundDeliveries | None = None,
) -> int:
    """Acknowledged messages, in a few set-based statements (the hot path of delivery): a
    Core UPDATE ... RETURNING per ACK code on the outbox, then the orders' state changes.
    `bound`: their events as bound before the transaction, used when what the UPDATE
    returned is what they say (it is, unless the row changed since the claim)."""
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
        details = {
            order_id: _delivered_detail(control_id, ack_code, attempts)
            for order_id, kind, control_id, attempts in rows
            if kind == OutboxKind.RELEASE
        }
        if not details:
            continue
        events = None
        if bound is not None and all(bound.details.get(i) == d for i, d in details.items()):
            events = bound.events
        lifecycle.transition_many(
            session,
            list(details),
            OrderStatus.DELIVERED,
            OrderEventKind.DELIVERED,
            detail=None if events is not None else details,
            events=events,
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
    claims: Mapping[int, Claimed] | None = None,
) -> int:
    """Write what happened to claimed messages, in one transaction; returns deliveries.

    A message whose claim is no longer ours (it expired and another sender took it) is left
    to that sender. `now` is the clock's time (default: the system clock). `claims`: the
    claimed messages by id, so that the orders' "delivered" events are bound before the
    transaction (on SQLite, not while holding the write lock intake's commits wait for).
    """
    now = now or utcnow()
    acknowledged = [o for o in outcomes if o.kind is DeliveryOutcome.DELIVERED]
    bound = None
    if claims is not None and acknowledged:
        bound = _bind_deliveries(engine.dialect, claims, acknowledged, now)
    with session_scope(engine) as session:
        delivered = _record_deliveries(session, token, acknowledged, now, bound)
        failed = [o for o in outcomes if o.kind is not DeliveryOutcome.DELIVERED]
        if failed:
            _record_failures(session, token, failed, policy, now)
    return delivered
