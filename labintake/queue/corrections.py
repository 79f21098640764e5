"""Corrections of a held order, each citing the office's recorded answer, then re-verified."""

from __future__ import annotations

from sqlalchemy import func
from sqlmodel import select

from labintake.codes.icd10 import looks_like_icd10, normalize_icd10
from labintake.errors import WorkflowError
from labintake.models.orders import Order, OrderDiagnosis
from labintake.models.queue import OfficeContact
from labintake.queue import integration
from labintake.queue.contacts import ContactOutcome, plain_text
from labintake.queue.guard import ActionResult, Actor, GuardedActions


class Corrections(GuardedActions):
    """Diagnosis and test-code corrections. The lab never chooses a code itself: each change
    cites a contact where the office answered, and the rules run again in the same commit."""

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
        code = normalize_icd10(plain_text(new_code, "the code"))
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
        code = plain_text(new_code, "the code")
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
