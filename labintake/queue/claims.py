"""Who holds an order and since when, and what a coder whose order was taken over is told.

A claim is the order's `assigned_to` (with `assigned_at`). Another coder claiming it is a
take-over: asked first ("Held by Ana Ruiz since 10:12 — take over?"), recorded as a
`taken_over` event naming the previous holder, and shown to that coder on their next action
or reload ("Taken over by Ben Ortiz at 10:15").
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, tzinfo

from sqlmodel import Session, col, select

from labintake.models.orders import Order, OrderEvent
from labintake.models.users import User

TAKEN_OVER = "taken_over"  # the OrderEvent action of a take-over


@dataclass(frozen=True, slots=True)
class Holder:
    username: str
    name: str  # the display name, else the username
    since: datetime | None  # None for a claim older than the claim time

    def question(self, zone: tzinfo) -> str:
        """'Held by Ana Ruiz since 10:12 — take over?' in the coder's time zone."""
        since = f" since {self.since.astimezone(zone):%H:%M}" if self.since else ""
        return f"Held by {self.name}{since} — take over?"


@dataclass(frozen=True, slots=True)
class TakeOver:
    by: str  # username
    by_name: str
    at: datetime


def display_names(session: Session, usernames: Iterable[str]) -> dict[str, str]:
    """Username -> display name (the username when the user has none or is gone)."""
    wanted = sorted(set(usernames))
    if not wanted:
        return {}
    rows = session.exec(
        select(User.username, User.display_name).where(col(User.username).in_(wanted))
    )
    found = {username: name for username, name in rows if name}
    return {u: found.get(u, u) for u in wanted}


def holders(session: Session, orders: Sequence[Order], viewer: str) -> dict[int, Holder]:
    """For each order held by someone other than `viewer`: who, and since when."""
    held = [o for o in orders if o.assigned_to and o.assigned_to != viewer and o.id is not None]
    names = display_names(session, (o.assigned_to or "" for o in held))
    return {
        o.id or 0: Holder(o.assigned_to or "", names[o.assigned_to or ""], o.assigned_at)
        for o in held
    }


def taken_from(
    session: Session, order: Order, events: Sequence[OrderEvent], username: str
) -> TakeOver | None:
    """The take-over that took this order from `username`, if it is no longer theirs."""
    if order.assigned_to == username:
        return None
    for event in reversed(events):
        before = event.detail.get("before") if isinstance(event.detail, dict) else None
        if event.action == TAKEN_OVER and isinstance(before, dict):
            if before.get("assigned_to") != username:
                return None  # the latest take-over was from someone else
            name = display_names(session, [event.actor])[event.actor]
            return TakeOver(event.actor, name, event.at)
    return None
