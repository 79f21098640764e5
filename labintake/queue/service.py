"""`ClarificationQueue`: what a coder does to a held order, each action audited and guarded.

Every action names the order's `row_version` the coder saw. The version is bumped with a
conditional UPDATE first, so of two coders acting at once exactly one wins; the other gets
ConcurrentChangeError with the current version. A repeated submit of the same form (same
`action_key`) by the same person is recognised and answered with the current state instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, time
from typing import Any

from sqlalchemy import func, update
from sqlmodel import Session, col, select

from labintake import audit
from labintake.auth.roles import Role
from labintake.codes.icd10 import looks_like_icd10, normalize_icd10
from labintake.config import Settings
from labintake.db import utcnow
from labintake.errors import (
    ConcurrentChangeError,
    NotFoundError,
    PermissionDeniedError,
    WorkflowError,
)
from labintake.models.orders import Finding, Order, OrderDiagnosis, OrderEvent, OrderTest
from labintake.models.queue import OfficeContact, OfficeQuery
from labintake.models.users import User
from labintake.queue import integration
from labintake.queue.contacts import MAX_UNANSWERED_ATTEMPTS, ContactInput, ContactOutcome
from labintake.queue.listing import QUEUE_STATUSES
from labintake.queue.office_query import compose_query
from labintake.statuses import OrderStatus, Severity

ABN_MODIFIERS = ("GA", "GZ", "GX", "GY")
# A coder may release a held order, or a verified one before the release job takes it.
RELEASABLE = (*QUEUE_STATUSES, OrderStatus.VERIFIED.value)


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


class ClarificationQueue:
    """The coder's actions on held orders. Each method commits its own transaction."""

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
        statuses: tuple[str, ...] = QUEUE_STATUSES,
    ) -> Order | None:
        """Bump the row version if it is still `expected_version`; None for a replayed submit."""
        session = self.session
        claimed = session.execute(
            update(Order)
            .where(col(Order.id) == order_id, col(Order.row_version) == expected_version)
            .values(row_version=col(Order.row_version) + 1, updated_at=utcnow())
        )
        if claimed.rowcount != 1:  # type: ignore[attr-defined]
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
        if order.status not in statuses:
            session.rollback()
            raise WorkflowError(
                f"order {order_id} is {order.status.replace('_', ' ')}; this action needs "
                f"it to be {' or '.join(s.replace('_', ' ') for s in statuses)}"
            )
        return order

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
        self.session.add(
            OrderEvent(
                order_id=order.id,
                actor=actor.username,
                action=action,
                detail={
                    "before": before,
                    "after": after,
                    "action_key": action_key,
                    "via": actor.via,
                    **extra,
                },
            )
        )
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

    # -- assignment --------------------------------------------------------------------

    def assign(
        self,
        actor: Actor,
        order_id: int,
        expected_version: int,
        assignee: str | None,
        action_key: str = "",
    ) -> ActionResult:
        """Claim (assignee = self), hand over (managers), or put back (assignee None)."""
        if actor.role is Role.CODER and assignee not in (actor.username, None):
            raise PermissionDeniedError("coders claim orders for themselves; managers assign")
        if assignee is not None and assignee != actor.username:
            user = self.session.exec(select(User).where(User.username == assignee)).first()
            if user is None or not user.active:
                raise WorkflowError(f"no active user {assignee!r}")
        order = self._take(actor, order_id, expected_version, action_key)
        if order is None:
            return self._replayed(order_id)
        before = {"assigned_to": order.assigned_to}
        order.assigned_to = assignee
        self.session.add(order)
        action = "claimed" if assignee == actor.username else "assigned"
        self._log(actor, order, action, before, {"assigned_to": assignee}, action_key)
        self.session.commit()
        return ActionResult(order)

    # -- contacts and queries ----------------------------------------------------------

    def unanswered_attempts(self, order_id: int) -> int:
        statement = select(func.count()).where(
            col(OfficeContact.order_id) == order_id,
            col(OfficeContact.outcome) != ContactOutcome.ANSWERED.value,
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
        row = OfficeContact(
            order_id=order_id,
            at=now,
            actor=actor.username,
            channel=contact.channel.value,
            outcome=contact.outcome.value,
            person=contact.person,
            answer=contact.answer,
            follow_up_on=contact.follow_up_on,
            query_id=contact.query_id,
        )
        self.session.add(row)
        cap_reached = not answered and attempts + 1 >= MAX_UNANSWERED_ATTEMPTS
        if answered or cap_reached:
            order.status = OrderStatus.HELD.value
            order.due_at = now
        else:
            assert contact.follow_up_on is not None
            order.status = OrderStatus.AWAITING_OFFICE.value
            order.due_at = datetime.combine(contact.follow_up_on, time.min, tzinfo=UTC)
        if query is not None and answered:
            query.status = "answered"
            query.closed_at = now
            self.session.add(query)
        self._claim_if_free(actor, order)
        self.session.add(order)
        self.session.flush()
        after = {
            "status": order.status,
            "due_at": order.due_at.isoformat(),
            "contact_id": row.id,
            "channel": row.channel,
            "outcome": row.outcome,
            "answer": row.answer,
            "follow_up_on": row.follow_up_on.isoformat() if row.follow_up_on else None,
        }
        self._log(actor, order, "contact_recorded", before, after, action_key)
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
        """Write a compliant query from the order's open findings (printable page and PDF)."""
        order = self._take(actor, order_id, expected_version, action_key)
        if order is None:
            return self._replayed(order_id), None
        findings = list(
            self.session.exec(
                select(Finding).where(Finding.order_id == order_id, Finding.state == "open")
            )
        )
        draft = compose_query(order, findings, self._diagnoses(order_id), self._tests(order_id))
        query = OfficeQuery(
            order_id=order_id,
            actor=actor.username,
            question=draft.question,
            indicators=list(draft.indicators),
            choices=list(draft.choices),
        )
        self.session.add(query)
        self._claim_if_free(actor, order)
        self.session.add(order)
        self.session.flush()
        self._log(actor, order, "query_created", {}, {"query_id": query.id}, action_key)
        self.session.commit()
        return ActionResult(order), query

    # -- corrections -------------------------------------------------------------------

    def _answer(self, order_id: int, contact_id: int) -> OfficeContact:
        contact = self.session.get(OfficeContact, contact_id)
        if contact is None or contact.order_id != order_id:
            raise WorkflowError(f"contact {contact_id} is not recorded on order {order_id}")
        if contact.outcome != ContactOutcome.ANSWERED.value or not contact.answer.strip():
            raise WorkflowError(
                "a correction must cite a contact where the office answered; "
                f"contact {contact_id} has no answer recorded"
            )
        return contact

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

    def correct_diagnosis(
        self,
        actor: Actor,
        order_id: int,
        expected_version: int,
        *,
        contact_id: int,
        new_code: str,
        replaces: str = "",
        action_key: str = "",
    ) -> ActionResult:
        """Add (or replace) a diagnosis as the office stated it, then re-verify at once."""
        code = normalize_icd10(new_code)
        if not looks_like_icd10(code):
            raise WorkflowError(f"{new_code!r} is not an ICD-10-CM code")
        contact = self._answer(order_id, contact_id)
        order = self._take(actor, order_id, expected_version, action_key)
        if order is None:
            return self._replayed(order_id)
        current = self._diagnoses(order_id)
        before = {"diagnoses": [d.code for d in current]}
        if replaces:
            old = normalize_icd10(replaces)
            matches = [d for d in current if normalize_icd10(d.code) == old]
            if not matches:
                self.session.rollback()
                raise WorkflowError(f"the order has no active diagnosis {replaces!r}")
            for dx in matches:
                dx.active = False
                self.session.add(dx)
        all_seqs = self.session.exec(
            select(func.max(OrderDiagnosis.seq)).where(OrderDiagnosis.order_id == order_id)
        ).one()
        self.session.add(
            OrderDiagnosis(
                order_id=order_id,
                seq=int(all_seqs or 0) + 1,
                code=code,
                text=self._icd10_text(order, code),
                system="I10",
                location=f"contact {contact.id}",
                source="correction",
            )
        )
        self._claim_if_free(actor, order)
        self.session.add(order)
        self.session.flush()
        after = {"diagnoses": [d.code for d in self._diagnoses(order_id)]}
        self._log(
            actor, order, "diagnosis_corrected", before, after, action_key, contact_id=contact.id
        )
        return self._reverify(actor, order)

    def correct_test(
        self,
        actor: Actor,
        order_id: int,
        expected_version: int,
        *,
        contact_id: int,
        test_seq: int,
        new_code: str,
        system: str = "",
        action_key: str = "",
    ) -> ActionResult:
        """Replace a test's code as the office stated it, then re-verify at once."""
        code = new_code.strip()
        if not code or len(code) > 40:
            raise WorkflowError("give the test code the office confirmed")
        contact = self._answer(order_id, contact_id)
        order = self._take(actor, order_id, expected_version, action_key)
        if order is None:
            return self._replayed(order_id)
        test = next((t for t in self._tests(order_id) if t.seq == test_seq), None)
        if test is None:
            self.session.rollback()
            raise WorkflowError(f"the order has no test {test_seq}")
        before = {
            "test_seq": test_seq,
            "code": test.sent_code,
            "system": test.sent_system,
            "alt_code": test.sent_alt_code,
            "alt_system": test.sent_alt_system,
        }
        test.sent_code = code
        test.sent_system = system.strip()[:40]
        test.sent_alt_code = ""
        test.sent_alt_system = ""
        self.session.add(test)
        self._claim_if_free(actor, order)
        self.session.add(order)
        after = {"test_seq": test_seq, "code": code, "system": test.sent_system}
        self._log(
            actor, order, "test_code_corrected", before, after, action_key, contact_id=contact.id
        )
        return self._reverify(actor, order)

    def _icd10_text(self, order: Order, code: str) -> str:
        from labintake.codes.tables import get_code_tables
        from labintake.errors import CodeTableError

        try:
            tables = get_code_tables(self.settings)
        except CodeTableError:
            return ""
        release = tables.icd10_for(order.date_of_service or order.created_at.date())
        entry = release.get(code) if release is not None else None
        return entry.description if entry is not None else ""

    def _reverify(self, actor: Actor, order: Order) -> ActionResult:
        assert order.id is not None
        self.session.flush()
        integration.reverify(self.session, self.settings, order.id, actor.username)
        self.session.commit()
        fresh = self.session.get(Order, order.id, populate_existing=True)
        assert fresh is not None
        note = f"re-verified: {fresh.status.replace('_', ' ')}"
        return ActionResult(fresh, note=note)

    # -- release and reject ------------------------------------------------------------

    def open_holds(self, order_id: int) -> list[Finding]:
        return list(
            self.session.exec(
                select(Finding).where(
                    Finding.order_id == order_id,
                    Finding.state == "open",
                    Finding.severity == Severity.HOLD.value,
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
        """Release to the LIS: no open hold finding, or each overridden with a written reason."""
        reason = override_reason.strip()
        modifier = modifier.strip().upper()
        if modifier and modifier not in ABN_MODIFIERS:
            raise WorkflowError(f"modifier must be one of {', '.join(ABN_MODIFIERS)}")
        if modifier and not reason:
            raise WorkflowError(f"say why {modifier} applies (e.g. 'ABN signed on file')")
        holds = self.open_holds(order_id)
        if holds and not reason:
            codes = ", ".join(sorted({f.code for f in holds}))
            raise WorkflowError(
                f"open hold findings ({codes}): resolve them, or override with a written reason"
            )
        order = self._take(actor, order_id, expected_version, action_key, RELEASABLE)
        if order is None:
            return self._replayed(order_id)
        before = {"status": order.status}
        if holds:
            for finding in self.open_holds(order_id):
                finding.state = "overridden"
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
        reason: str,
        action_key: str = "",
    ) -> ActionResult:
        reason = reason.strip()
        if not reason:
            raise WorkflowError("a rejection needs a reason the ordering office can act on")
        order = self._take(actor, order_id, expected_version, action_key)
        if order is None:
            return self._replayed(order_id)
        before = {"status": order.status}
        order.status = OrderStatus.REJECTED.value
        self._claim_if_free(actor, order)
        self.session.add(order)
        self._log(
            actor, order, "rejected", before, {"status": order.status, "reason": reason}, action_key
        )
        self.session.commit()
        return ActionResult(order)
