"""`ClarificationQueue`: what a coder does to a held order, each action audited and guarded.

The guard (row versions, replayed submits, history and audit) is in `labintake.queue.guard`;
corrections citing the office's answer are in `labintake.queue.corrections`.
"""

from __future__ import annotations

from datetime import UTC, datetime, time

from sqlalchemy import func
from sqlmodel import col, select

from labintake.auth.roles import Role
from labintake.db import utcnow
from labintake.errors import NotFoundError, PermissionDeniedError, WorkflowError
from labintake.lifecycle import OrderEventKind
from labintake.models.orders import Finding, Order
from labintake.models.queue import OfficeContact, OfficeQuery
from labintake.models.users import User
from labintake.queue import integration
from labintake.queue.claims import TAKEN_OVER, holders
from labintake.queue.contacts import (
    MAX_UNANSWERED_ATTEMPTS,
    ContactInput,
    ContactOutcome,
    add_working_days,
    plain_text,
)
from labintake.queue.corrections import Corrections
from labintake.queue.guard import ActionResult, Actor
from labintake.queue.office_query import compose_query
from labintake.queue.open_queries import ClosedBecause, close_open_queries, open_query_for
from labintake.statuses import (
    QUERY_CLOSINGS,
    RELEASABLE,
    RELEASED_STATUSES,
    FindingState,
    OrderStatus,
    QueryStatus,
    Severity,
)
from labintake.verification.modifiers import ABN_MODIFIERS

__all__ = [
    "ABN_MODIFIERS",
    "ALREADY_RELEASED",
    "QUERY_EXISTS",
    "RELEASABLE",
    "ActionResult",
    "Actor",
    "ClarificationQueue",
]

OTHER_REASON = "Other"  # the reject reason that needs its details written out
ALREADY_RELEASED = "already_released"  # ActionResult.note: released meanwhile, nothing to do
QUERY_EXISTS = "query_exists"  # ActionResult.note: an open query already asks this


class ClarificationQueue(Corrections):
    """The coder's actions on held orders. Each method commits its own transaction."""

    # -- assignment --------------------------------------------------------------------

    def assign(
        self,
        actor: Actor,
        order_id: int,
        expected_version: int,
        assignee: str | None,
        action_key: str = "",
        *,
        take_over: bool = False,
    ) -> ActionResult:
        """Claim (assignee = self), hand over (managers), or put back (assignee None).

        Claiming an order someone else holds is a take-over: without `take_over` it is refused
        with HeldByAnotherError (the screen asks "Held by Ana since 10:12 — take over?");
        with it, the order changes hands and a `taken_over` event names the previous holder."""
        if actor.role is Role.CODER and assignee not in (actor.username, None):
            raise PermissionDeniedError("coders claim orders for themselves; managers assign")
        if assignee is not None and assignee != actor.username:
            user = self.session.exec(select(User).where(User.username == assignee)).first()
            if user is None or not user.active:
                raise WorkflowError(f"no active user {assignee!r}")
        claiming = assignee == actor.username
        current = self.session.get(Order, order_id)
        if (
            claiming
            and not take_over
            and current is not None
            and current.row_version == expected_version
            and current.assigned_to not in (None, actor.username)
        ):
            holder = holders(self.session, [current], actor.username)[order_id]
            self._refuse_claimed(actor, order_id, holder.username, holder=holder)
        order = self._take(
            actor, order_id, expected_version, action_key, take_over=take_over and claiming
        )
        if order is None:
            return self._replayed(order_id)
        previous = order.assigned_to
        before: dict[str, object] = {"assigned_to": previous}
        action = "claimed" if claiming else "assigned"
        if claiming and previous not in (None, actor.username):
            action = TAKEN_OVER
            before["assigned_at"] = order.assigned_at.isoformat() if order.assigned_at else None
        if previous != assignee:
            order.assigned_at = utcnow() if assignee is not None else None
        order.assigned_to = assignee
        self.session.add(order)
        self._log(actor, order, action, before, {"assigned_to": assignee}, action_key)
        self.session.commit()
        return ActionResult(order, note=TAKEN_OVER if action == TAKEN_OVER else "")

    # -- contacts and queries ----------------------------------------------------------

    def unanswered_attempts(self, order_id: int) -> int:
        statement = select(func.count()).where(
            col(OfficeContact.order_id) == order_id,
            col(OfficeContact.outcome) != ContactOutcome.ANSWERED,
        )
        return int(self.session.exec(statement).one())

    def record_contact(
        self,
        actor: Actor,
        order_id: int,
        expected_version: int,
        contact: ContactInput,
        action_key: str = "",
    ) -> tuple[ActionResult, OfficeContact | None]:
        now = utcnow()
        contact = contact.validated(now.date())
        answered = contact.outcome is ContactOutcome.ANSWERED
        attempts = self.unanswered_attempts(order_id)
        if not answered and attempts >= MAX_UNANSWERED_ATTEMPTS:
            raise WorkflowError(
                f"{MAX_UNANSWERED_ATTEMPTS} unanswered attempts already: release with a written "
                "override, or reject the order as unanswered by the office"
            )
        query: OfficeQuery | None = None
        if contact.query_id is not None:
            query = self.session.get(OfficeQuery, contact.query_id)
            if query is None or query.order_id != order_id:
                raise WorkflowError(f"query {contact.query_id} does not belong to this order")
        order = self._take(actor, order_id, expected_version, action_key)
        if order is None:
            return self._replayed(order_id), None
        before = {"status": order.status, "due_at": order.due_at.isoformat()}
        target = order.status
        row = OfficeContact(
            order_id=order_id,
            at=now,
            actor=actor.username,
            channel=contact.channel,
            outcome=contact.outcome,
            person=contact.person,
            answer=contact.answer,
            follow_up_on=contact.follow_up_on,
            query_id=contact.query_id,
        )
        self.session.add(row)
        cap_reached = not answered and attempts + 1 >= MAX_UNANSWERED_ATTEMPTS
        if answered or cap_reached:
            target = OrderStatus.HELD
            order.due_at = now
        else:
            assert contact.follow_up_on is not None
            target = OrderStatus.AWAITING_OFFICE
            order.due_at = datetime.combine(contact.follow_up_on, time.min, tzinfo=UTC)
        if query is not None and answered and query.status == QueryStatus.OPEN:
            query.status = QueryStatus.ANSWERED
            query.closed_at = now
            query.closed_reason = ClosedBecause.ANSWERED
            self.session.add(query)
        self._claim_if_free(actor, order)
        self.session.add(order)
        self.session.flush()
        after = {
            "status": target,
            "due_at": order.due_at.isoformat(),
            "contact_id": row.id,
            "channel": row.channel,
            "outcome": row.outcome,
            "answer": row.answer,
            "follow_up_on": row.follow_up_on.isoformat() if row.follow_up_on else None,
        }
        self._move(actor, order, target, OrderEventKind.CONTACT_RECORDED, before, after, action_key)
        if cap_reached:
            self._log(
                actor,
                order,
                "contact_cap_reached",
                {},
                {"unanswered_attempts": attempts + 1},
                action_key + ":cap" if action_key else "",
            )
        self.session.commit()
        return ActionResult(order), row

    def create_query(
        self, actor: Actor, order_id: int, expected_version: int, action_key: str = ""
    ) -> tuple[ActionResult, OfficeQuery | None]:
        """Write a compliant query from the order's open findings (printable page and PDF).

        An open query already asking about the same findings is returned instead of a second
        one (ActionResult.note QUERY_EXISTS), and nothing is changed."""
        order = self.session.get(Order, order_id)
        if order is None:
            raise NotFoundError(f"no order {order_id}")
        findings = list(
            self.session.exec(
                select(Finding).where(
                    Finding.order_id == order_id, Finding.state == FindingState.OPEN
                )
            )
        )
        draft = compose_query(order, findings, self._diagnoses(order_id), self._tests(order_id))
        existing = open_query_for(self.session, order_id, draft.finding_keys)
        if existing is not None:
            return ActionResult(order, replayed=True, note=QUERY_EXISTS), existing
        order = self._take(actor, order_id, expected_version, action_key)
        if order is None:
            return self._replayed(order_id), None
        now = utcnow()
        query = OfficeQuery(
            order_id=order_id,
            created_at=now,
            actor=actor.username,
            question=draft.question,
            indicators=list(draft.indicators),
            choices=list(draft.choices),
            tests=list(draft.tests),
            questions=[q.as_json() for q in draft.questions],
            finding_keys=list(draft.finding_keys),
            respond_by=add_working_days(now.date(), self.settings.query_respond_within_days),
        )
        self.session.add(query)
        self._claim_if_free(actor, order)
        self.session.add(order)
        self.session.flush()
        self._log(actor, order, "query_created", {}, {"query_id": query.id}, action_key)
        self.session.commit()
        return ActionResult(order), query

    def close_query(
        self,
        actor: Actor,
        order_id: int,
        expected_version: int,
        query_id: int,
        status: str,
        action_key: str = "",
    ) -> ActionResult:
        """Close a query (no longer needed) or cancel it (sent in error)."""
        if status not in QUERY_CLOSINGS:
            raise WorkflowError("a query is closed or cancelled")
        query = self.session.get(OfficeQuery, query_id)
        if query is None or query.order_id != order_id:
            raise WorkflowError(f"query {query_id} does not belong to this order")
        order = self._take(actor, order_id, expected_version, action_key)
        if order is None:
            return self._replayed(order_id)
        if query.status != QueryStatus.OPEN:
            self.session.rollback()
            raise WorkflowError(f"query {query_id} is {query.status} already; nothing was changed")
        before = {"query_id": query_id, "status": query.status}
        query.status = status
        query.closed_at = utcnow()
        query.closed_reason = (
            ClosedBecause.BY_CODER if status == QueryStatus.CLOSED else ClosedBecause.SENT_IN_ERROR
        )
        self.session.add(query)
        self._log(actor, order, f"query_{status}", before, {"status": status}, action_key)
        self.session.commit()
        return ActionResult(order)

    # -- release and reject ------------------------------------------------------------

    def open_holds(self, order_id: int) -> list[Finding]:
        return list(
            self.session.exec(
                select(Finding).where(
                    Finding.order_id == order_id,
                    Finding.state == FindingState.OPEN,
                    Finding.severity == Severity.HOLD,
                )
            )
        )

    def release(
        self,
        actor: Actor,
        order_id: int,
        expected_version: int,
        *,
        override_reason: str = "",
        modifier: str = "",
        action_key: str = "",
    ) -> ActionResult:
        """Release to the LIS: no open hold finding, or each overridden with a written reason.

        An order released meanwhile (a correction cleared its last hold and the release worker
        took it, or someone else released it) is what the coder asked for: answered with
        ALREADY_RELEASED, not as a conflict."""
        current = self.session.get(Order, order_id)
        if current is not None and current.status in RELEASED_STATUSES:
            return ActionResult(current, replayed=True, note=ALREADY_RELEASED)
        reason = plain_text(override_reason, "the override reason")
        modifier = plain_text(modifier, "the modifier").upper()
        if modifier and modifier not in ABN_MODIFIERS:
            raise WorkflowError(f"modifier must be one of {', '.join(ABN_MODIFIERS)}")
        if modifier and not reason:
            raise WorkflowError(
                f"say why {modifier} applies (e.g. 'ABN signed on file')", field="override_reason"
            )
        holds = self.open_holds(order_id)
        if holds and not reason:
            codes = ", ".join(sorted({f.code for f in holds}))
            raise WorkflowError(
                f"open hold findings ({codes}): resolve them, or override with a written reason",
                field="override_reason",
            )
        order = self._take(actor, order_id, expected_version, action_key, RELEASABLE)
        if order is None:
            return self._replayed(order_id)
        before = {"status": order.status}
        if holds:
            for finding in self.open_holds(order_id):
                finding.state = FindingState.OVERRIDDEN
                finding.override_reason = reason
                self.session.add(finding)
            self._log(
                actor,
                order,
                "holds_overridden",
                {"open": sorted({f.code for f in holds})},
                {"reason": reason, "modifier": modifier},
                action_key + ":override" if action_key else "",
            )
        self._claim_if_free(actor, order)
        self.session.flush()
        integration.release(self.session, order, actor.username, [modifier] if modifier else [])
        self._log(
            actor,
            order,
            "release_requested",
            before,
            {"status": order.status, "modifier": modifier},
            action_key,
        )
        self.session.commit()
        return ActionResult(order)

    def reject(
        self,
        actor: Actor,
        order_id: int,
        expected_version: int,
        *,
        reason: str = "",
        category: str = "",
        action_key: str = "",
    ) -> ActionResult:
        """Reject with a reason the office can act on: one of the lab's reasons
        (`REJECT_REASONS`), with details in free text (required for "Other"), or free text."""
        details = plain_text(reason, "the reason")
        category = plain_text(category, "the reason")
        if category:
            allowed = self.settings.reject_reasons
            if category not in allowed:
                raise WorkflowError(
                    f"choose one of the reasons: {', '.join(allowed)}", field="category"
                )
            if category == OTHER_REASON and not details:
                raise WorkflowError(
                    "say what the office should know: 'Other' needs details", field="reason"
                )
            reason = f"{category}: {details}" if details and category != OTHER_REASON else details
            reason = reason or category
        else:
            reason = details
        if not reason:
            raise WorkflowError(
                "a rejection needs a reason the ordering office can act on", field="reason"
            )
        order = self._take(actor, order_id, expected_version, action_key)
        if order is None:
            return self._replayed(order_id)
        before = {"status": order.status}
        # Read by the placer replies (ORR/ORL "unable to accept", with this reason).
        order.details = {**order.details, "reject_reason": reason}
        self._claim_if_free(actor, order)
        self.session.add(order)
        after = {"status": OrderStatus.REJECTED, "reason": reason}
        self._move(
            actor, order, OrderStatus.REJECTED, OrderEventKind.REJECTED, before, after, action_key
        )
        self.session.flush()
        close_open_queries(self.session, [order_id], ClosedBecause.REJECTED, actor=actor.username)
        self.session.commit()
        return ActionResult(order)
