"""The guard every queue action passes: row-version claim, replay detection, history and audit.

Every action names the order's `row_version` the coder saw. The version is bumped with a
conditional UPDATE first (`lifecycle.claim_version`), so of two coders acting at once exactly
one wins; the other gets ConcurrentChangeError with the current version. A status change the
action makes is `lifecycle.transition` in the same transaction (one version step). A repeated
submit of the same form (same `action_key`) by the same person is recognised and answered
with the current state instead.

An order claimed by a coder is that coder's: only the assignee or a manager (or admin) may act
on it, on the screen and through the API alike. Anyone else is refused (PermissionDeniedError,
HTTP 403) with nothing changed, and the refusal is audited (`action_refused`), unless they
take the order over (`ClarificationQueue.assign` with `take_over`, asked first, audited).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Any, NoReturn

from sqlmodel import Session, col, select

from labintake import audit, lifecycle
from labintake.auth.roles import Role
from labintake.config import Settings
from labintake.db import utcnow
from labintake.errors import (
    ConcurrentChangeError,
    HeldByAnotherError,
    NotFoundError,
    PermissionDeniedError,
    WorkflowError,
)
from labintake.lifecycle import OrderEventKind
from labintake.models.orders import Order, OrderDiagnosis, OrderEvent, OrderTest
from labintake.models.users import User
from labintake.queue.claims import Holder
from labintake.statuses import QUEUE_STATUSES, OrderStatus


@dataclass(frozen=True, slots=True)
class Actor:
    username: str
    role: Role
    via: str = "web"  # web | api | cli

    @classmethod
    def of(cls, user: User, via: str) -> Actor:
        return cls(user.username, Role(user.role), via)


@dataclass(frozen=True, slots=True)
class ActionResult:
    order: Order
    replayed: bool = False  # this very submit had been applied already
    note: str = ""


class GuardedActions:
    """What every action shares; `ClarificationQueue` builds the actions on it."""

    def __init__(self, session: Session, settings: Settings) -> None:
        self.session = session
        self.settings = settings

    # -- guard -------------------------------------------------------------------------

    def _take(
        self,
        actor: Actor,
        order_id: int,
        expected_version: int,
        action_key: str,
        statuses: Collection[OrderStatus] = QUEUE_STATUSES,
        *,
        take_over: bool = False,
    ) -> Order | None:
        """Bump the row version if it is still `expected_version`; None for a replayed submit.

        `take_over`: the actor takes the order from its holder (the caller logs it)."""
        session = self.session
        if not lifecycle.claim_version(session, order_id, expected_version):
            session.rollback()
            current = session.get(Order, order_id, populate_existing=True)
            if current is None:
                raise NotFoundError(f"no order {order_id}")
            if action_key and self._already_applied(order_id, action_key, actor):
                return None
            last = self._last_event(order_id)
            who = f" by {last.actor} ({last.action.replace('_', ' ')})" if last else ""
            raise ConcurrentChangeError(
                f"order {order_id} was changed{who} after you opened it; nothing was saved. "
                "The page now shows its current state.",
                order_id=order_id,
                current_row_version=current.row_version,
            )
        order = session.get(Order, order_id, populate_existing=True)
        assert order is not None
        holder = order.assigned_to
        if actor.role is Role.CODER and holder not in (None, actor.username) and not take_over:
            self._refuse_claimed(actor, order_id, holder)
        if order.status not in statuses:
            session.rollback()
            raise WorkflowError(
                f"order {order_id} is {order.status.replace('_', ' ')}; this action needs "
                f"it to be {' or '.join(s.replace('_', ' ') for s in statuses)}"
            )
        return order

    def _refuse_claimed(
        self, actor: Actor, order_id: int, assignee: str, *, holder: Holder | None = None
    ) -> NoReturn:
        """Undo the version bump, audit the refused attempt, and refuse it. With `holder`: a
        claim of an order someone else holds, not confirmed as a take-over (the screen asks)."""
        self.session.rollback()
        audit.record(
            self.session,
            actor.username,
            "action_refused",
            order_id=order_id,
            via=actor.via,
            after={
                "reason": "claimed by another coder"
                + ("; take-over not confirmed" if holder else ""),
                "assigned_to": assignee,
            },
        )
        self.session.commit()
        if holder is not None:
            named = holder.name + (f" ({assignee})" if holder.name != assignee else "")
            since = f" since {holder.since:%Y-%m-%d %H:%M} UTC" if holder.since else ""
            raise HeldByAnotherError(
                f"order {order_id} is held by {named}{since}: take it over, or leave it to "
                "them. Nothing was saved.",
                order_id=order_id,
                holder=assignee,
            )
        raise PermissionDeniedError(
            f"order {order_id} is {assignee}'s: only {assignee} or a manager may act on it. "
            "Nothing was saved; ask a manager to assign it to you."
        )

    def _already_applied(self, order_id: int, action_key: str, actor: Actor) -> bool:
        recent = self.session.exec(
            select(OrderEvent)
            .where(OrderEvent.order_id == order_id)
            .order_by(col(OrderEvent.id).desc())
            .limit(10)
        )
        return any(
            e.actor == actor.username and e.detail.get("action_key") == action_key for e in recent
        )

    def _last_event(self, order_id: int) -> OrderEvent | None:
        return self.session.exec(
            select(OrderEvent)
            .where(OrderEvent.order_id == order_id)
            .order_by(col(OrderEvent.id).desc())
            .limit(1)
        ).first()

    def _log(
        self,
        actor: Actor,
        order: Order,
        action: str,
        before: dict[str, Any],
        after: dict[str, Any],
        action_key: str,
        **extra: Any,
    ) -> None:
        assert order.id is not None
        lifecycle.record_event(
            self.session,
            order.id,
            action,
            self._detail(actor, before, after, action_key, extra),
            actor=actor.username,
        )
        self._audit(actor, order, action, before, after, extra)

    def _move(
        self,
        actor: Actor,
        order: Order,
        to: OrderStatus,
        kind: OrderEventKind,
        before: dict[str, Any],
        after: dict[str, Any],
        action_key: str,
    ) -> None:
        """Change the order's status (its version was claimed by `_take`), with history and
        audit."""
        lifecycle.transition(
            self.session,
            order,
            to,
            kind,
            actor=actor.username,
            detail=self._detail(actor, before, after, action_key, {}),
            version_claimed=True,
        )
        self._audit(actor, order, kind, before, after, {})

    @staticmethod
    def _detail(
        actor: Actor,
        before: dict[str, Any],
        after: dict[str, Any],
        action_key: str,
        extra: dict[str, Any],
    ) -> dict[str, Any]:
        return {
            "before": before,
            "after": after,
            "action_key": action_key,
            "via": actor.via,
            **extra,
        }

    def _audit(
        self,
        actor: Actor,
        order: Order,
        action: str,
        before: dict[str, Any],
        after: dict[str, Any],
        extra: dict[str, Any],
    ) -> None:
        assert order.id is not None
        audit.record(
            self.session,
            actor.username,
            action,
            order_id=order.id,
            via=actor.via,
            before=before,
            after={**after, **extra},
        )

    def _replayed(self, order_id: int) -> ActionResult:
        order = self.session.get(Order, order_id)
        assert order is not None
        return ActionResult(order, replayed=True, note="already saved")

    def _claim_if_free(self, actor: Actor, order: Order) -> None:
        if order.assigned_to is None:
            order.assigned_to = actor.username
            order.assigned_at = utcnow()

    def _diagnoses(self, order_id: int) -> list[OrderDiagnosis]:
        return list(
            self.session.exec(
                select(OrderDiagnosis)
                .where(OrderDiagnosis.order_id == order_id, OrderDiagnosis.active == True)  # noqa: E712
                .order_by(col(OrderDiagnosis.seq))
            )
        )

    def _tests(self, order_id: int) -> list[OrderTest]:
        return list(
            self.session.exec(
                select(OrderTest).where(OrderTest.order_id == order_id).order_by(col(OrderTest.seq))
            )
        )
