"""Notices the jobs write (follow-ups due, escalations, daily summaries, dead letters), as a
list a person works through and marks done."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, update
from sqlmodel import Session, col, select

from labintake import audit
from labintake.auth.roles import Role
from labintake.db import utcnow
from labintake.errors import NotFoundError, PermissionDeniedError
from labintake.models.release import Notification

KIND_LABELS = {
    "follow_up_due": "Follow-up due",
    "escalation": "Hold escalated",
    "daily_summary": "Daily summary",
    "dead_letter": "Delivery failed for good",
}
PAGE = 100


@dataclass(frozen=True, slots=True)
class Notice:
    id: int
    kind: str
    label: str
    text: str
    order_id: int | None
    created_at: datetime
    done_at: datetime | None


def _roles(role: Role) -> tuple[str, ...]:
    """Coders see the coders' notices; managers and admins see every notice."""
    return ("coder",) if not role.allows(Role.MANAGER) else ("coder", "manager")


def list_notices(session: Session, role: Role, *, done: bool = False) -> list[Notice]:
    """Open notices (newest first), or the last ones marked done."""
    statement = select(Notification).where(col(Notification.recipient_role).in_(_roles(role)))
    if done:
        statement = statement.where(col(Notification.read_at).is_not(None)).order_by(
            col(Notification.read_at).desc()
        )
    else:
        statement = statement.where(col(Notification.read_at).is_(None)).order_by(
            col(Notification.created_at).desc(), col(Notification.id).desc()
        )
    return [
        Notice(
            n.id or 0,
            n.kind,
            KIND_LABELS.get(n.kind, n.kind.replace("_", " ").capitalize()),
            n.text,
            n.order_id,
            n.created_at,
            n.read_at,
        )
        for n in session.exec(statement.limit(PAGE))
    ]


def open_count(session: Session, role: Role) -> int:
    return int(
        session.exec(
            select(func.count()).where(
                col(Notification.recipient_role).in_(_roles(role)),
                col(Notification.read_at).is_(None),
            )
        ).one()
    )


def mark_done(session: Session, notice_id: int, username: str, role: Role, via: str) -> bool:
    """Mark one notice done (audited); False when it was already done."""
    notice = session.get(Notification, notice_id)
    if notice is None:
        raise NotFoundError(f"no notice {notice_id}")
    if notice.recipient_role not in _roles(role):
        raise PermissionDeniedError("this notice is for managers")
    changed = session.execute(
        update(Notification)
        .where(col(Notification.id) == notice_id, col(Notification.read_at).is_(None))
        .values(read_at=utcnow())
    )
    done = bool(changed.rowcount)  # type: ignore[attr-defined]
    if done:
        audit.record(
            session,
            username,
            "notice_done",
            order_id=notice.order_id,
            via=via,
            after={"notice": notice_id, "kind": notice.kind},
        )
    session.commit()
    return done
