"""Everything about one order that the order page and `GET /api/orders/{id}` show."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import func
from sqlmodel import Session, col, select

from labintake.errors import NotFoundError
from labintake.models.messages import InboundMessage
from labintake.models.orders import (
    Finding,
    Order,
    OrderDiagnosis,
    OrderEvent,
    OrderTest,
    Verification,
)
from labintake.models.queue import OfficeContact, OfficeQuery
from labintake.queue.contacts import MAX_UNANSWERED_ATTEMPTS, ContactOutcome
from labintake.statuses import FindingState, Severity


@dataclass(frozen=True, slots=True)
class MessageSummary:
    id: int
    control_id: str
    sending_application: str
    sending_facility: str
    message_type: str
    version: str
    received_at: datetime
    raw_available: bool


# An order's tests and diagnoses are shown a page at a time: an order of thousands of tests
# (possible when LABINTAKE_MAX_TESTS_PER_ORDER is raised) never makes a page of megabytes.
ROWS_PER_PAGE = 100


@dataclass(slots=True)
class OrderDetail:
    order: Order
    message: MessageSummary | None
    tests: list[OrderTest]  # one page: from tests_offset, at most ROWS_PER_PAGE
    diagnoses: list[OrderDiagnosis]  # active and replaced ones; the first ROWS_PER_PAGE
    findings: list[Finding]  # of the latest verification
    verification: Verification | None
    events: list[OrderEvent]
    contacts: list[OfficeContact]
    queries: list[OfficeQuery]
    tests_total: int = 0
    tests_offset: int = 0
    diagnoses_total: int = 0

    @property
    def tests_next_offset(self) -> int | None:
        """Where the next page of tests starts, or None on the last page."""
        following = self.tests_offset + len(self.tests)
        return following if following < self.tests_total else None

    @property
    def unanswered_attempts(self) -> int:
        return sum(1 for c in self.contacts if c.outcome != ContactOutcome.ANSWERED)

    @property
    def attempts_left(self) -> int:
        return max(0, MAX_UNANSWERED_ATTEMPTS - self.unanswered_attempts)

    @property
    def answered_contacts(self) -> list[OfficeContact]:
        return [c for c in self.contacts if c.outcome == ContactOutcome.ANSWERED]

    @property
    def necessity(self) -> dict[int, dict[str, Any]]:
        """Medical necessity per test seq (pass / fail / unverified / not_applicable, and the
        policies applied), as the latest verification recorded it in the history."""
        for event in reversed(self.events):
            tests = event.detail.get("tests") if isinstance(event.detail, dict) else None
            if isinstance(tests, list):
                return {
                    int(t["seq"]): {
                        "result": str(t.get("necessity", "")),
                        "policies": list(t.get("policies", [])),
                    }
                    for t in tests
                    if isinstance(t, dict) and "seq" in t
                }
        return {}

    @property
    def open_holds(self) -> list[Finding]:
        return [
            f for f in self.findings if f.state == FindingState.OPEN and f.severity == Severity.HOLD
        ]


def _count(session: Session, table: type[OrderTest] | type[OrderDiagnosis], order_id: int) -> int:
    return int(
        session.exec(
            select(func.count()).select_from(table).where(table.order_id == order_id)
        ).one()
    )


def load_order_detail(
    session: Session, order_id: int, *, tests_offset: int = 0, page: int = ROWS_PER_PAGE
) -> OrderDetail:
    """The order with one page of its tests (from `tests_offset`) and its first diagnoses."""
    order = session.get(Order, order_id)
    if order is None:
        raise NotFoundError(f"no order {order_id}")
    message = session.get(InboundMessage, order.message_id)
    summary = (
        MessageSummary(
            id=message.id or 0,
            control_id=message.control_id,
            sending_application=message.sending_application,
            sending_facility=message.sending_facility,
            message_type=message.message_type,
            version=message.version,
            received_at=message.received_at,
            raw_available=message.raw is not None,
        )
        if message is not None
        else None
    )
    verification = session.exec(
        select(Verification)
        .where(Verification.order_id == order_id)
        .order_by(col(Verification.id).desc())
        .limit(1)
    ).first()
    findings: list[Finding] = []
    if verification is not None:
        findings = list(
            session.exec(
                select(Finding)
                .where(Finding.verification_id == verification.id)
                .order_by(col(Finding.id))
            )
        )
    return OrderDetail(
        order=order,
        message=summary,
        tests=list(
            session.exec(
                select(OrderTest)
                .where(OrderTest.order_id == order_id)
                .order_by(col(OrderTest.seq))
                .offset(tests_offset)
                .limit(page)
            )
        ),
        tests_total=_count(session, OrderTest, order_id),
        tests_offset=tests_offset,
        diagnoses=list(
            session.exec(
                select(OrderDiagnosis)
                .where(OrderDiagnosis.order_id == order_id)
                .order_by(col(OrderDiagnosis.seq))
                .limit(page)
            )
        ),
        diagnoses_total=_count(session, OrderDiagnosis, order_id),
        findings=findings,
        verification=verification,
        events=list(
            session.exec(
                select(OrderEvent)
                .where(OrderEvent.order_id == order_id)
                .order_by(col(OrderEvent.id))
            )
        ),
        contacts=list(
            session.exec(
                select(OfficeContact)
                .where(OfficeContact.order_id == order_id)
                .order_by(col(OfficeContact.id))
            )
        ),
        queries=list(
            session.exec(
                select(OfficeQuery)
                .where(OfficeQuery.order_id == order_id)
                .order_by(col(OfficeQuery.id))
            )
        ),
    )


def _iso(value: date | datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def order_summary_json(order: Order) -> dict[str, Any]:
    return {
        "id": order.id,
        "status": order.status,
        "row_version": order.row_version,
        "placer_order_number": order.placer_order_number,
        "sending_facility": order.sending_facility,
        "patient": {
            "mrn": order.patient_mrn,
            "family_name": order.patient_family_name,
            "given_name": order.patient_given_name,
        },
        "date_of_service": _iso(order.date_of_service),
        "created_at": _iso(order.created_at),
        "due_at": _iso(order.due_at),
        "assigned_to": order.assigned_to,
    }


def order_detail_json(detail: OrderDetail) -> dict[str, Any]:
    """The contract's `GET /api/orders/{id}` body."""
    order = detail.order
    message = detail.message
    return {
        "id": order.id,
        "status": order.status,
        "row_version": order.row_version,
        "message": None
        if message is None
        else {
            "id": message.id,
            "control_id": message.control_id,
            "sending_application": message.sending_application,
            "sending_facility": message.sending_facility,
            "message_type": message.message_type,
            "version": message.version,
            "received_at": _iso(message.received_at),
        },
        "control_id": message.control_id if message else None,
        "sending_application": order.sending_application,
        "sending_facility": order.sending_facility,
        "order_control": order.order_control,
        "placer_order_number": order.placer_order_number,
        "filler_order_number": order.filler_order_number,
        "patient": {
            "mrn": order.patient_mrn,
            "family_name": order.patient_family_name,
            "given_name": order.patient_given_name,
            "birth_date": _iso(order.patient_birth_date),
            "sex": order.patient_sex,
        },
        "payer": {
            "company_id": order.payer_company_id,
            "company_name": order.payer_company_name,
            "plan_id": order.payer_plan_id,
        },
        "ordering_provider": {
            "npi": order.provider_npi,
            "family_name": order.provider_family_name,
            "given_name": order.provider_given_name,
            "office": {
                "name": order.office_name,
                "phone": order.office_phone,
                "fax": order.office_fax,
                "address": order.office_address,
            },
        },
        "date_of_service": _iso(order.date_of_service),
        "assigned_to": order.assigned_to,
        "due_at": _iso(order.due_at),
        "tests": [
            {
                "seq": t.seq,
                "location": t.location,
                "sent": {
                    "code": t.sent_code,
                    "text": t.sent_text,
                    "system": t.sent_system,
                    "alt_code": t.sent_alt_code,
                    "alt_system": t.sent_alt_system,
                },
                "resolved": {"local_code": t.local_code, "loinc": t.loinc, "cpt": t.cpt},
                "necessity": detail.necessity.get(t.seq, {}).get("result"),
                "units": t.units,
                "modifiers": [m for m in t.modifiers.split(",") if m],
            }
            for t in detail.tests
        ],
        "tests_total": detail.tests_total,
        "tests_offset": detail.tests_offset,
        "tests_next_offset": detail.tests_next_offset,
        "diagnoses": [
            {
                "seq": d.seq,
                "code": d.code,
                "text": d.text,
                "system": d.system,
                "location": d.location,
                "source": d.source,
                "active": d.active,
            }
            for d in detail.diagnoses
        ],
        "diagnoses_total": detail.diagnoses_total,
        "findings": [
            {
                "id": f.id,
                "code": f.code,
                "severity": f.severity,
                "location": f.location,
                "message": f.message,
                "clarify": f.clarify,
                "test_seq": f.test_seq,
                "state": f.state,
                "override_reason": f.override_reason,
            }
            for f in detail.findings
        ],
        "code_table_versions": detail.verification.table_versions if detail.verification else {},
        "rules_version": detail.verification.rules_version if detail.verification else None,
        "contacts": [
            {
                "id": c.id,
                "at": _iso(c.at),
                "actor": c.actor,
                "channel": c.channel,
                "outcome": c.outcome,
                "person": c.person,
                "answer": c.answer,
                "follow_up_on": _iso(c.follow_up_on),
                "query_id": c.query_id,
            }
            for c in detail.contacts
        ],
        "queries": [
            {
                "id": q.id,
                "status": q.status,
                "created_at": _iso(q.created_at),
                "actor": q.actor,
                "respond_by": _iso(q.respond_by),
                "closed_at": _iso(q.closed_at),
                "closed_reason": q.closed_reason,
                "finding_codes": [str(asked.get("finding", "")) for asked in q.questions],
            }
            for q in detail.queries
        ],
        "history": [
            {"at": _iso(e.at), "actor": e.actor, "action": e.action, "detail": e.detail}
            for e in detail.events
        ],
    }
