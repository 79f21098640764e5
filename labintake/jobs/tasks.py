"""The scheduled jobs' work. Each function takes what it needs and returns a count.

Each keeps its work in one transaction or is idempotent, so a run cut short (an instance
dying mid-job) leaves nothing half done and the next run picks up cleanly:

- follow-up reminders and escalations write notifications with a unique dedupe key;
- the daily summary records its period in `job_run` in the same transaction as the notice;
- the raw-message purge is one UPDATE.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta

from sqlalchemy import update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from labintake.db import session_scope, utcnow
from labintake.models.messages import InboundMessage
from labintake.models.orders import Order
from labintake.models.release import JobRun, Notification
from labintake.stats import snapshot
from labintake.statuses import QUEUE_STATUSES, OrderStatus


def _notify_once(session: Session, notice: Notification) -> bool:
    exists = session.exec(
        select(Notification.id).where(Notification.dedupe_key == notice.dedupe_key)
    ).first()
    if exists is not None:
        return False
    session.add(notice)
    return True


def follow_up_reminders(engine: Engine, now: datetime | None = None) -> int:
    """Remind coders of offices that have not answered by the follow-up date (an order
    awaiting the office whose next action is due)."""
    now = now or utcnow()
    created = 0
    with session_scope(engine) as session:
        orders = session.exec(
            select(Order).where(
                Order.status == OrderStatus.AWAITING_OFFICE, col(Order.due_at) <= now
            )
        ).all()
        for order in orders:
            created += _notify_once(
                session,
                Notification(
                    kind="follow_up_due",
                    recipient_role="coder",
                    order_id=order.id,
                    text=(
                        f"Order {order.id} ({order.placer_order_number}): "
                        f"{order.office_name or 'the office'} has not answered; "
                        f"follow-up was due {order.due_at:%Y-%m-%d %H:%M} UTC."
                    ),
                    detail={"assigned_to": order.assigned_to, "office": order.office_name},
                    dedupe_key=f"follow-up:{order.id}:{order.due_at.isoformat()}",
                    created_at=now,
                ),
            )
    return created


def escalate_old_holds(engine: Engine, after_hours: float, now: datetime | None = None) -> int:
    """Tell managers about holds older than `after_hours` (once per order)."""
    now = now or utcnow()
    cutoff = now - timedelta(hours=after_hours)
    created = 0
    with session_scope(engine) as session:
        orders = session.exec(
            select(Order).where(
                col(Order.status).in_(QUEUE_STATUSES), col(Order.created_at) <= cutoff
            )
        ).all()
        for order in orders:
            age_hours = (now - order.created_at).total_seconds() / 3600
            created += _notify_once(
                session,
                Notification(
                    kind="escalation",
                    recipient_role="manager",
                    order_id=order.id,
                    text=(
                        f"Order {order.id} ({order.placer_order_number}) from "
                        f"{order.office_name or order.sending_facility} has been held for "
                        f"{age_hours:.0f} hours."
                    ),
                    detail={"status": order.status, "age_hours": round(age_hours, 1)},
                    dedupe_key=f"escalate:{order.id}",
                    created_at=now,
                ),
            )
    return created


def daily_summary(engine: Engine, owner: str, day: date | None = None) -> int:
    """The day's summary for managers, exactly once per day however many instances run it.

    The `job_run` row (unique per job and day) and the notice commit together: a second run
    for the same day, on this or any instance, fails the unique key and writes nothing.
    """
    now = utcnow()
    day = day or now.date()
    try:
        with session_scope(engine) as session:
            figures = snapshot(session, window_hours=24, now=now)
            result = {
                "by_status": figures.by_status,
                "delivered_24h": figures.reconciliation.delivered,
                "received_24h": figures.reconciliation.received,
                "dead_letters": figures.outbox.get("dead", 0),
                "median_minutes_to_release": figures.turnaround_released.median_minutes,
            }
            session.add(
                JobRun(
                    job="daily_summary",
                    run_key=day.isoformat(),
                    owner=owner,
                    finished_at=now,
                    result=result,
                )
            )
            session.flush()
            held = figures.by_status.get("held", 0) + figures.by_status.get("awaiting_office", 0)
            session.add(
                Notification(
                    kind="daily_summary",
                    recipient_role="manager",
                    text=(
                        f"{day.isoformat()}: {figures.reconciliation.received} orders received, "
                        f"{figures.reconciliation.delivered} delivered, {held} on hold, "
                        f"{result['dead_letters']} dead letters."
                    ),
                    detail=result,
                    dedupe_key=f"daily-summary:{day.isoformat()}",
                    created_at=now,
                )
            )
    except IntegrityError:
        return 0
    return 1


# Messages whose raw HL7 one purge transaction drops.
PURGE_BATCH = 500


def purge_raw_messages(
    engine: Engine,
    retention_days: int,
    now: datetime | None = None,
    *,
    batch: int = PURGE_BATCH,
) -> int:
    """Drop the raw HL7 of messages older than the retention; status and audit stay.

    The oldest are found in a read (ix_inbound_raw_kept), then dropped `batch` at a time by
    primary key, each batch its own short transaction: on SQLite a write holds the lock that
    every ACK of intake waits for, and one statement over the whole table held it for as long
    as the table took to walk (0.3 s for 300,000 messages; seconds on a year of them)."""
    if batch < 1:
        raise ValueError("batch must be at least 1")
    now = now or utcnow()
    cutoff = now - timedelta(days=retention_days)
    oldest = (
        select(col(InboundMessage.id))
        .where(col(InboundMessage.received_at) < cutoff, col(InboundMessage.raw).is_not(None))
        .order_by(col(InboundMessage.received_at))
        .limit(batch)
    )
    total = 0
    while True:
        with engine.connect() as connection:
            ids = list(connection.execute(oldest).scalars())
        if not ids:
            return total
        with session_scope(engine) as session:
            result = session.execute(
                update(InboundMessage)
                .where(col(InboundMessage.id).in_(ids), col(InboundMessage.raw).is_not(None))
                .values(raw=None, raw_purged_at=now)
                .execution_options(synchronize_session=False)
            )
            total += int(result.rowcount)  # type: ignore[attr-defined]
        if len(ids) < batch:
            return total
