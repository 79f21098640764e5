"""The audit trail: every view of an order's patient data and every change, who and when.

Entries are added to the caller's session and committed with the change they describe, so
an action and its audit entry stand or fall together.
"""

from __future__ import annotations

from typing import Any

from sqlmodel import Session, col, select

from labintake.models.users import AuditEntry


def record(
    session: Session,
    actor: str,
    action: str,
    *,
    order_id: int | None = None,
    message_id: int | None = None,
    via: str = "",
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
) -> AuditEntry:
    """Add an audit entry to `session` (committed by the caller with the change itself)."""
    entry = AuditEntry(
        actor=actor,
        action=action,
        order_id=order_id,
        message_id=message_id,
        via=via,
        before=before or {},
        after=after or {},
    )
    session.add(entry)
    return entry


def record_view(
    session: Session,
    actor: str,
    what: str,
    *,
    order_id: int | None = None,
    message_id: int | None = None,
    via: str = "",
) -> None:
    """Record that `actor` saw patient data (an order page, its raw message...), and commit."""
    record(session, actor, what, order_id=order_id, message_id=message_id, via=via)
    session.commit()


def record_view_of_list(
    session: Session, actor: str, order_ids: list[int], *, via: str, filters: dict[str, Any]
) -> None:
    """Record that `actor` saw a list of orders (names, MRNs), and commit."""
    record(session, actor, "view_order_list", via=via, after={"ids": order_ids, **filters})
    session.commit()


def entries_for_order(session: Session, order_id: int, limit: int = 500) -> list[AuditEntry]:
    """An order's audit entries, newest first."""
    statement = (
        select(AuditEntry)
        .where(AuditEntry.order_id == order_id)
        .order_by(col(AuditEntry.id).desc())
        .limit(limit)
    )
    return list(session.exec(statement))
