"""Reading stored orders for verification: their facts and open findings (the patient's
history is read by `labintake.verification.stored_history`).

Queries live here; the rules stay pure.

Everything is read as plain rows (Core selects of the columns the rules need, kept in the
named tuples below), not as ORM objects: a batch of 500 orders would otherwise build some
2,000 instrumented instances whose attribute access and identity-map bookkeeping cost more
CPU than the rules themselves. Nothing here is changed through these rows; the writer changes
the stored rows with statements.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, NamedTuple

from sqlalchemy import bindparam
from sqlalchemy import select as columns
from sqlalchemy.sql import ColumnElement, Select
from sqlalchemy.sql.elements import BindParameter
from sqlmodel import Session

from labintake.codes.catalog import CatalogEntry, TestCatalog
from labintake.db import chunked
from labintake.models import Finding as FindingRow
from labintake.models import Order, OrderDiagnosis, OrderEvent, OrderTest
from labintake.models.tables import table_of
from labintake.statuses import (
    LIVE_FINDING_STATES,
    FindingState,
    OrderStatus,
)
from labintake.verification.beneficiary import stored_patient_key
from labintake.verification.facts import (
    DiagnosisFacts,
    OrderFacts,
    PayerFacts,
    TestFacts,
)

TEST_CORRECTED = "test_code_corrected"  # the clarification queue's event for a test correction
NOT_HISTORY = (OrderStatus.CANCELLED, OrderStatus.REJECTED, OrderStatus.ERROR)
CHUNK = 500


ORDERS = table_of(Order)
TESTS = table_of(OrderTest)
DIAGNOSES = table_of(OrderDiagnosis)
FINDINGS = table_of(FindingRow)
EVENTS = table_of(OrderEvent)


class OrderRecord(NamedTuple):
    """The columns of a stored order that verification reads (`ORDER_COLUMNS`, same order)."""

    id: int
    message_id: int
    group_index: int
    status: str
    sending_facility: str
    placer_order_number: str
    patient_mrn: str
    patient_birth_date: date | None
    patient_sex: str
    payer_company_id: str
    payer_company_name: str
    payer_plan_id: str
    provider_npi: str
    provider_family_name: str
    provider_given_name: str
    date_of_service: date | None
    ordered_at: datetime | None
    created_at: datetime
    details: dict[str, Any]
    beneficiary_key: str


class TestRecord(NamedTuple):
    """A stored test (`order_test`), as sent and as last resolved."""

    id: int
    seq: int
    location: str
    sent_code: str
    sent_text: str
    sent_system: str
    sent_alt_code: str
    sent_alt_system: str
    units: int
    local_code: str | None
    loinc: str | None
    cpt: str | None
    modifiers: str


class DiagnosisRecord(NamedTuple):
    """An active stored diagnosis (`order_diagnosis`)."""

    seq: int
    code: str
    text: str
    system: str
    location: str


class FindingRecord(NamedTuple):
    """A live stored finding (`finding`: open or overridden)."""

    id: int
    code: str
    location: str
    state: str
    reference: dict[str, Any]


ORDER_COLUMNS = tuple(ORDERS.c[name] for name in OrderRecord._fields)
_TEST_COLUMNS = tuple(TESTS.c[name] for name in TestRecord._fields)
_DIAGNOSIS_COLUMNS = tuple(DIAGNOSES.c[name] for name in DiagnosisRecord._fields)
_FINDING_COLUMNS = tuple(FINDINGS.c[name] for name in FindingRecord._fields)


@dataclass(slots=True)
class StoredOrder:
    """One order with what verification needs from the database."""

    order: OrderRecord
    tests: list[TestRecord] = field(default_factory=list)
    diagnoses: list[DiagnosisRecord] = field(default_factory=list)  # active ones
    findings: list[FindingRecord] = field(default_factory=list)  # open or overridden
    # tests whose code a coder replaced: their stored resolved codes predate the correction
    corrected: set[int] = field(default_factory=set)

    @property
    def id(self) -> int:
        return self.order.id


def select_orders(*where: ColumnElement[bool]) -> Select[Any]:
    """The `OrderRecord` columns of the orders matching `where` (for `read_orders`)."""
    return columns(*ORDER_COLUMNS).where(*where)


def read_orders(session: Session, statement: Select[Any]) -> list[OrderRecord]:
    """The orders a `select_orders` statement finds, as records."""
    return [OrderRecord._make(row) for row in session.execute(statement).all()]


def orders_by_id(session: Session, ids: Sequence[int]) -> list[OrderRecord]:
    found: list[OrderRecord] = []
    for chunk in chunks(sorted(ids)):
        found += read_orders(session, select_orders(ORDERS.c.id.in_(chunk)))
    return found


def service_date(order: OrderRecord) -> date:
    """The date of service, else the day it was ordered, else the day it was received."""
    if order.date_of_service is not None:
        return order.date_of_service
    if order.ordered_at is not None:
        return order.ordered_at.date()
    return order.created_at.date()


def chunks(values: Sequence[Any]) -> Iterable[Sequence[Any]]:
    """Ids (or keys) CHUNK at a time, for the IN lists of the reads."""
    return chunked(values, CHUNK)


# Built once: each batch only binds its ids (an expanding IN), so no statement is rebuilt and
# no id is coerced to a literal one by one.
IDS: BindParameter[list[int]] = bindparam("ids", expanding=True)
_TESTS_OF = (
    columns(TESTS.c.order_id, *_TEST_COLUMNS).where(TESTS.c.order_id.in_(IDS)).order_by(TESTS.c.seq)
)
_DIAGNOSES_OF = (
    columns(DIAGNOSES.c.order_id, *_DIAGNOSIS_COLUMNS)
    .where(DIAGNOSES.c.order_id.in_(IDS), DIAGNOSES.c.active)
    .order_by(DIAGNOSES.c.seq, DIAGNOSES.c.id)
)
_FINDINGS_OF = (
    columns(FINDINGS.c.order_id, *_FINDING_COLUMNS)
    .where(FINDINGS.c.order_id.in_(IDS), FINDINGS.c.state.in_(LIVE_FINDING_STATES))
    .order_by(FINDINGS.c.id)
)
_CORRECTIONS_OF = columns(EVENTS.c.order_id, EVENTS.c.detail).where(
    EVENTS.c.order_id.in_(IDS), EVENTS.c.action == TEST_CORRECTED
)


def load_orders(session: Session, orders: Sequence[OrderRecord]) -> list[StoredOrder]:
    """The orders with their tests, active diagnoses, live findings and corrected tests,
    in id order."""
    stored = {o.id: StoredOrder(o) for o in orders}
    ids = sorted(stored)
    for chunk in chunks(ids):
        bound = {"ids": chunk}
        for order_id, *test in session.execute(_TESTS_OF, bound).all():
            stored[order_id].tests.append(TestRecord._make(test))
        for order_id, *dx in session.execute(_DIAGNOSES_OF, bound).all():
            stored[order_id].diagnoses.append(DiagnosisRecord._make(dx))
        for order_id, *finding in session.execute(_FINDINGS_OF, bound).all():
            stored[order_id].findings.append(FindingRecord._make(finding))
        for order_id, detail in session.execute(_CORRECTIONS_OF, bound).all():
            seq = ((detail or {}).get("after") or {}).get("test_seq")
            if isinstance(seq, int):
                stored[order_id].corrected.add(seq)
    return [stored[i] for i in ids]


def load_siblings(session: Session, stored: Sequence[StoredOrder]) -> list[StoredOrder]:
    """The other live orders (not cancelled, rejected or in error) of the same messages."""
    if not stored:
        return []
    ids = {s.id for s in stored}
    messages = sorted({s.order.message_id for s in stored})
    found: list[OrderRecord] = []
    for chunk in chunks(messages):
        found += read_orders(
            session,
            select_orders(
                ORDERS.c.message_id.in_(chunk),
                ORDERS.c.status.not_in(NOT_HISTORY),
                ORDERS.c.id.not_in(ids),
            ),
        )
    return load_orders(session, found) if found else []


def _modifiers(text: str) -> tuple[str, ...]:
    return tuple(m.strip().upper() for m in text.replace(";", ",").split(",") if m.strip())


def interface_codes(
    tests: Iterable[TestRecord], corrected: set[int] | None = None
) -> dict[str, str]:
    """Sender code -> catalog code, as the reader mapped it (kept on each test row); tests a
    coder corrected are left out (their stored code belongs to the code they replaced)."""
    codes: dict[str, str] = {}
    for test in tests:
        if corrected and test.seq in corrected:
            continue
        if test.local_code:
            if test.sent_code:
                codes.setdefault(test.sent_code, test.local_code)
            if test.sent_alt_code:
                codes.setdefault(test.sent_alt_code, test.local_code)
    return codes


def facts_of(stored: StoredOrder, extra_codes: dict[str, str] | None = None) -> OrderFacts:
    order = stored.order
    details: dict[str, Any] = order.details or {}
    provider: dict[str, Any] = details.get("provider") or {}
    codes = interface_codes(stored.tests, stored.corrected)
    if extra_codes:
        codes = {**codes, **extra_codes}
    signature = details.get("signature_on_file")
    name = " ".join(p for p in (order.provider_given_name, order.provider_family_name) if p)
    return OrderFacts(
        tests=tuple(
            TestFacts(
                seq=i,
                location=t.location or f"OBR[{i}]-4",
                code=t.sent_code,
                system=t.sent_system,
                text=t.sent_text,
                alt_code=t.sent_alt_code,
                alt_system=t.sent_alt_system,
                units=t.units,
                modifiers=_modifiers(t.modifiers),
            )
            for i, t in enumerate(stored.tests, start=1)
        ),
        diagnoses=tuple(
            DiagnosisFacts(
                code=d.code, location=d.location or f"DG1[{d.seq}]-3", system=d.system, text=d.text
            )
            for d in stored.diagnoses
        ),
        date_of_service=service_date(order),
        provider_npi=order.provider_npi,
        provider_name=name,
        provider_identifier=str(provider.get("identifier") or ""),
        provider_location=str(provider.get("location") or "ORC-12"),
        payer=PayerFacts(order.payer_company_id, order.payer_company_name, order.payer_plan_id),
        payers=_payers(details),
        patient_key=stored_patient_key(details, order.sending_facility, order.patient_mrn),
        patient_birth_date=order.patient_birth_date,
        patient_sex=order.patient_sex,
        interface=str(details.get("interface") or ""),
        interface_codes=codes,
        signature_on_file=signature if isinstance(signature, bool) else None,
        placer_order_number=order.placer_order_number,
        overridden=frozenset(
            finding_key(row) for row in stored.findings if row.state == FindingState.OVERRIDDEN
        ),
    )


def finding_key(row: FindingRecord) -> tuple[str, str, str]:
    """A stored finding's key, as `Finding.key` names a raised one (code, location, subject)."""
    return (row.code, row.location, str((row.reference or {}).get("subject", "")))


def _payers(details: dict[str, Any]) -> tuple[PayerFacts, ...]:
    """Every insurance the order was received with (primary first), as stored by the reader."""
    found: list[PayerFacts] = []
    for item in details.get("insurances") or ():
        if isinstance(item, dict):
            found.append(
                PayerFacts(
                    company_id=str(item.get("company_id") or ""),
                    company_name=str(item.get("company_name") or ""),
                    plan_id=str(item.get("plan_id") or ""),
                )
            )
    return tuple(found)


def resolve_stored_test(catalog: TestCatalog, test: TestRecord) -> CatalogEntry | None:
    """The catalog entry of a stored test, from its resolved codes or as sent."""
    return resolve_codes(
        catalog,
        test.local_code,
        test.sent_code,
        test.sent_system,
        test.sent_alt_code,
        test.sent_alt_system,
    )


def resolve_codes(
    catalog: TestCatalog,
    local_code: str | None,
    code: str,
    system: str,
    alt_code: str,
    alt_system: str,
) -> CatalogEntry | None:
    if local_code:
        entry = catalog.by_code(local_code)
        if entry is not None:
            return entry
    mapping = {code: local_code} if local_code else None
    return catalog.resolve(code, system, mapping) or (
        catalog.resolve(alt_code, alt_system, mapping) if alt_code else None
    )
