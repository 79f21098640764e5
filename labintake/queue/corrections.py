"""Corrections of a held order, each citing the office's recorded answer, then re-verified."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import func
from sqlmodel import select

from labintake.codes.diagnosis_check import CodeCheck, check_diagnosis_code
from labintake.codes.icd10 import normalize_icd10
from labintake.errors import WorkflowError
from labintake.models.limits import column_limit
from labintake.models.orders import Order, OrderDiagnosis, OrderTest
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
        if contact.outcome != ContactOutcome.ANSWERED or not contact.answer.strip():
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
        """Add (or replace) a diagnosis as the office stated it, then re-verify at once.

        Refused unless the code is complete and billable in the ICD-10-CM release used for the
        order's date of service: a correction never makes an order worse."""
        typed = plain_text(new_code, "the code")

        def add(order: Order, current: list[OrderDiagnosis], contact: OfficeContact) -> None:
            check = self.check_code(order, typed)
            if not check.ok:
                raise WorkflowError(check.reason, field="new_code")
            code = check.code
            if any(normalize_icd10(d.code) == code for d in current):
                raise WorkflowError(f"{code} is already on the order.", field="new_code")
            if replaces:
                self._strike(current, replaces, replaces)
            all_seqs = self.session.exec(
                select(func.max(OrderDiagnosis.seq)).where(OrderDiagnosis.order_id == order_id)
            ).one()
            self.session.add(
                OrderDiagnosis(
                    order_id=order_id,
                    seq=int(all_seqs or 0) + 1,
                    code=code,
                    text=check.description,
                    system="I10",
                    location=f"contact {contact.id}",
                    source="correction",
                )
            )

        return self._change_diagnoses(
            actor, order_id, expected_version, contact_id, action_key, "diagnosis_corrected", add
        )

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
        test.sent_system = system.strip()[: column_limit(OrderTest, "sent_system")]
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

    def remove_diagnosis(
        self,
        actor: Actor,
        order_id: int,
        expected_version: int,
        *,
        contact_id: int,
        code: str,
        action_key: str = "",
    ) -> ActionResult:
        """Take a diagnosis off the order because the office said it does not apply (kept,
        struck through, in the history), then re-verify at once."""

        def remove(order: Order, current: list[OrderDiagnosis], contact: OfficeContact) -> None:
            self._strike(current, plain_text(code, "the code"), code, field="code")

        return self._change_diagnoses(
            actor, order_id, expected_version, contact_id, action_key, "diagnosis_removed", remove
        )

    def _change_diagnoses(
        self,
        actor: Actor,
        order_id: int,
        expected_version: int,
        contact_id: int,
        action_key: str,
        action: str,
        change: Callable[[Order, list[OrderDiagnosis], OfficeContact], None],
    ) -> ActionResult:
        """What the diagnosis corrections share: the cited answer, the order taken at
        `expected_version` (an action already saved is answered as before), `change` applied
        to its active diagnoses (a WorkflowError it raises rolls the action back), the order
        claimed, `action` logged with the diagnoses before and after, and re-verified."""
        contact = self._answer(order_id, contact_id)
        order = self._take(actor, order_id, expected_version, action_key)
        if order is None:
            return self._replayed(order_id)
        current = self._diagnoses(order_id)
        before = {"diagnoses": [d.code for d in current]}
        try:
            change(order, current, contact)
        except WorkflowError:
            self.session.rollback()
            raise
        self._claim_if_free(actor, order)
        self.session.add(order)
        self.session.flush()
        after = {"diagnoses": [d.code for d in self._diagnoses(order_id)]}
        self._log(actor, order, action, before, after, action_key, contact_id=contact.id)
        return self._reverify(actor, order)

    def _strike(
        self, current: list[OrderDiagnosis], code: str, as_typed: str, *, field: str = ""
    ) -> None:
        """Strike the active diagnoses that are `code` (kept in the history, inactive)."""
        wanted = normalize_icd10(code)
        matches = [d for d in current if normalize_icd10(d.code) == wanted]
        if not matches:
            raise WorkflowError(f"the order has no active diagnosis {as_typed!r}", field=field)
        for dx in matches:
            dx.active = False
            self.session.add(dx)

    def correct_provider_npi(
        self,
        actor: Actor,
        order_id: int,
        expected_version: int,
        *,
        contact_id: int,
        npi: str,
        action_key: str = "",
    ) -> ActionResult:
        """Set the ordering provider's NPI as the office gave it (check digit verified), then
        re-verify at once."""
        from labintake.verification.providers import npi_problem

        value = "".join(plain_text(npi, "the NPI").split())
        problem = npi_problem(value)
        if problem is not None:
            raise WorkflowError(
                f"{problem}: check the NPI with the office (10 digits, the last a check digit).",
                field="npi",
            )
        contact = self._answer(order_id, contact_id)
        order = self._take(actor, order_id, expected_version, action_key)
        if order is None:
            return self._replayed(order_id)
        before = {"provider_npi": order.provider_npi}
        order.provider_npi = value
        self._claim_if_free(actor, order)
        self.session.add(order)
        self._log(
            actor,
            order,
            "provider_npi_corrected",
            before,
            {"provider_npi": value},
            action_key,
            contact_id=contact.id,
        )
        return self._reverify(actor, order)

    def check_code(self, order: Order, typed: str) -> CodeCheck:
        """The inline check of a typed diagnosis against the order's date of service."""
        from labintake.codes.tables import get_code_tables
        from labintake.errors import CodeTableError
        from labintake.verification.engine import icd10_release_for

        dos = order.date_of_service or order.created_at.date()
        try:
            tables = get_code_tables(self.settings)
        except CodeTableError as exc:
            return CodeCheck(
                normalize_icd10(typed), False, f"The code tables cannot be read: {exc}"
            )
        return check_diagnosis_code(icd10_release_for(tables, dos), typed, dos)

    def official_titles(self, order: Order, codes: list[str]) -> dict[str, str | None]:
        """Each code's ICD-10-CM title in the release in force on the date of service (None:
        not a code of that release); empty when the code tables cannot be read."""
        from labintake.codes.tables import get_code_tables
        from labintake.errors import CodeTableError
        from labintake.verification.engine import icd10_release_for

        try:
            release = icd10_release_for(
                get_code_tables(self.settings), order.date_of_service or order.created_at.date()
            )
        except CodeTableError:
            return {}
        if release is None:
            return {}
        titles: dict[str, str | None] = {}
        for code in codes:
            entry = release.get(normalize_icd10(code))
            titles[code] = entry.description if entry is not None else None
        return titles

    def _reverify(self, actor: Actor, order: Order) -> ActionResult:
        assert order.id is not None
        self.session.flush()
        integration.reverify(self.session, self.settings, order.id, actor.username)
        self.session.commit()
        fresh = self.session.get(Order, order.id, populate_existing=True)
        assert fresh is not None
        note = f"re-verified: {fresh.status.replace('_', ' ')}"
        return ActionResult(fresh, note=note)
