"""The transactional outbox: releasing an order writes its outbound message in the same commit.

`enqueue_release` is the one way a single order becomes `released`: the coder's release
action calls it inside its own transaction. Orders the rules verified are released in bulk by
`labintake.release.bulk.release_verified`, which writes the same rows set-based. The sender
(`labintake.release.sender`) delivers what the outbox holds; nothing here touches a socket.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import date, datetime
from typing import Any, Protocol

from sqlalchemy import Row, update
from sqlalchemy import select as select_rows
from sqlmodel import Session, col, select

from labintake import lifecycle
from labintake.config import Settings
from labintake.db import utcnow
from labintake.errors import WorkflowError
from labintake.hl7.ack import new_control_id
from labintake.hl7.order_builder import (
    LisProfile,
    OutboundDiagnosis,
    OutboundOrder,
    OutboundTest,
    build_order_message,
)
from labintake.lifecycle import OrderEventKind
from labintake.models.orders import Order, OrderDiagnosis, OrderTest
from labintake.models.release import OutboxEntry, OutboxKind, OutboxStatus
from labintake.models.tables import table_of
from labintake.queue.open_queries import ClosedBecause, close_open_queries
from labintake.statuses import SUPERSEDABLE, OrderStatus

LIS_DESTINATION = "lis"

_profile = LisProfile()


def lis_profile(settings: Settings) -> LisProfile:
    """The outbound message profile the settings describe."""
    return LisProfile(
        message_type=settings.lis_message_type,
        version=settings.lis_version,
        sending_application=settings.lis_sending_application,
        sending_facility=settings.lis_sending_facility,
        receiving_application=settings.lis_receiving_application,
        receiving_facility=settings.lis_receiving_facility,
        order_code=settings.lis_order_code,
        alternate_code=settings.lis_alternate_code,
        billing_codes=settings.lis_billing_codes,
    )


def configure_release(settings: Settings) -> LisProfile:
    """Use the settings' LIS profile for every release in this process (called at start-up)."""
    global _profile
    _profile = lis_profile(settings)
    return _profile


def active_profile() -> LisProfile:
    return _profile


class OrderFacts(Protocol):
    """What the outbound message needs of an order: an `Order`, or a row of its columns."""

    @property
    def id(self) -> int | None: ...
    @property
    def placer_order_number(self) -> str: ...
    @property
    def sending_facility(self) -> str: ...
    @property
    def patient_mrn(self) -> str: ...
    @property
    def patient_family_name(self) -> str: ...
    @property
    def patient_given_name(self) -> str: ...
    @property
    def patient_birth_date(self) -> date | None: ...
    @property
    def patient_sex(self) -> str: ...
    @property
    def payer_company_id(self) -> str: ...
    @property
    def payer_company_name(self) -> str: ...
    @property
    def payer_plan_id(self) -> str: ...
    @property
    def provider_npi(self) -> str: ...
    @property
    def provider_family_name(self) -> str: ...
    @property
    def provider_given_name(self) -> str: ...
    @property
    def office_name(self) -> str: ...
    @property
    def date_of_service(self) -> date | None: ...
    @property
    def ordered_at(self) -> datetime | None: ...


class TestFacts(Protocol):
    """What the outbound message needs of a test: an `OrderTest`, or a row of its columns."""

    @property
    def seq(self) -> int: ...
    @property
    def local_code(self) -> str | None: ...
    @property
    def sent_code(self) -> str: ...
    @property
    def sent_text(self) -> str: ...
    @property
    def loinc(self) -> str | None: ...
    @property
    def cpt(self) -> str | None: ...
    @property
    def units(self) -> int: ...
    @property
    def modifiers(self) -> str: ...


class DiagnosisFacts(Protocol):
    """What the outbound message needs of a diagnosis: an `OrderDiagnosis`, or a row."""

    @property
    def seq(self) -> int: ...
    @property
    def code(self) -> str: ...
    @property
    def text(self) -> str: ...
    @property
    def active(self) -> bool: ...


ORDERS = table_of(Order)
TESTS = table_of(OrderTest)
DIAGNOSES = table_of(OrderDiagnosis)

# The columns `outbound_order` and `sequence_key` read (OrderFacts), and the row_version a
# bulk release claims the order at; the order's JSON `details` and `error` are not read.
ORDER_COLUMNS = tuple(
    ORDERS.c[name]
    for name in (
        "id",
        "row_version",
        "placer_order_number",
        "sending_facility",
        "patient_mrn",
        "patient_family_name",
        "patient_given_name",
        "patient_birth_date",
        "patient_sex",
        "payer_company_id",
        "payer_company_name",
        "payer_plan_id",
        "provider_npi",
        "provider_family_name",
        "provider_given_name",
        "office_name",
        "date_of_service",
        "ordered_at",
    )
)
TEST_COLUMNS = tuple(
    TESTS.c[name]
    for name in (
        "id",
        "order_id",
        "seq",
        "local_code",
        "sent_code",
        "sent_text",
        "loinc",
        "cpt",
        "units",
        "modifiers",
    )
)
DIAGNOSIS_COLUMNS = tuple(
    DIAGNOSES.c[name] for name in ("order_id", "seq", "code", "text", "active")
)


def sequence_key(order: OrderFacts) -> str:
    """One patient's orders are delivered in order; orders without a patient id stand alone."""
    if order.patient_mrn:
        return f"{order.sending_facility}|{order.patient_mrn}"
    return f"order:{order.id}"


def _merge_modifiers(existing: str, extra: Iterable[str]) -> tuple[str, ...]:
    merged: list[str] = []
    for value in [*existing.split(","), *extra]:
        value = value.strip().upper()
        if value and value not in merged:
            merged.append(value)
    return tuple(merged)


def outbound_order(
    order: OrderFacts,
    tests: Sequence[TestFacts],
    diagnoses: Sequence[DiagnosisFacts],
    modifiers: Iterable[str] = (),
) -> OutboundOrder:
    """The values the LIS message carries: resolved codes and the final active diagnoses."""
    if order.id is None:
        raise WorkflowError("order has no id yet; flush it before releasing")
    extra = tuple(modifiers)
    return OutboundOrder(
        order_id=order.id,
        placer_order_number=order.placer_order_number,
        placer_facility=order.sending_facility.split("^", 1)[0],
        order_control="NW",
        patient_mrn=order.patient_mrn,
        patient_family_name=order.patient_family_name,
        patient_given_name=order.patient_given_name,
        patient_birth_date=order.patient_birth_date,
        patient_sex=order.patient_sex,
        payer_company_id=order.payer_company_id,
        payer_company_name=order.payer_company_name,
        payer_plan_id=order.payer_plan_id,
        provider_npi=order.provider_npi,
        provider_family_name=order.provider_family_name,
        provider_given_name=order.provider_given_name,
        office_name=order.office_name,
        date_of_service=order.date_of_service,
        ordered_at=order.ordered_at,
        tests=tuple(
            OutboundTest(
                seq=test.seq,
                local_code=test.local_code or test.sent_code,
                text=test.sent_text,
                loinc=test.loinc or "",
                cpt=test.cpt or "",
                units=test.units,
                modifiers=_merge_modifiers(test.modifiers, extra),
            )
            for test in sorted(tests, key=lambda t: t.seq)
        ),
        diagnoses=tuple(
            OutboundDiagnosis(code=d.code, text=d.text)
            for d in sorted(diagnoses, key=lambda d: d.seq)
            if d.active
        ),
    )


def _record(
    session: Session,
    order: Order,
    outbound: OutboundOrder,
    tests: Sequence[OrderTest],
    control_id: str,
    message: bytes,
    profile: LisProfile,
    actor: str,
    now: datetime,
    version_claimed: bool,
) -> OutboxEntry:
    """Outbox row, superseded older rows, order state and history: the caller commits."""
    assert order.id is not None
    session.execute(
        update(OutboxEntry)
        .where(
            col(OutboxEntry.order_id) == order.id,
            col(OutboxEntry.kind) == OutboxKind.RELEASE,
            col(OutboxEntry.status).in_(SUPERSEDABLE),
        )
        .values(status=OutboxStatus.SUPERSEDED, claimed_by=None, updated_at=now)
    )
    by_seq = {t.seq: t for t in outbound.tests}
    for test in tests:
        sent = by_seq.get(test.seq)
        if sent is not None and ",".join(sent.modifiers) != test.modifiers:
            test.modifiers = ",".join(sent.modifiers)
            session.add(test)
    entry = OutboxEntry(
        order_id=order.id,
        kind=OutboxKind.RELEASE,
        destination=LIS_DESTINATION,
        sequence_key=sequence_key(order),
        control_id=control_id,
        message_type=profile.message_type,
        message=message,
        created_by=actor,
        created_at=now,
        updated_at=now,
        next_attempt_at=now,
    )
    session.add(entry)
    lifecycle.transition(
        session,
        order,
        OrderStatus.RELEASED,
        OrderEventKind.RELEASED,
        actor=actor,
        detail={
            "before": {"status": order.status},
            "after": {"status": OrderStatus.RELEASED},
            "control_id": control_id,
            "message_type": profile.message_type,
            "modifiers": sorted({m for t in outbound.tests for m in t.modifiers}),
        },
        values={"released_at": now, "delivered_at": None},
        version_claimed=version_claimed,
        now=now,
    )
    session.flush()
    close_open_queries(session, [order.id], ClosedBecause.RELEASED, actor=actor, now=now)
    return entry


def enqueue_release(
    session: Session,
    order: Order,
    actor: str,
    modifiers: Iterable[str] = (),
    *,
    profile: LisProfile | None = None,
    version_claimed: bool = False,
) -> OutboxEntry:
    """Set `order` released and write its outbound message to the outbox, in the caller's
    transaction. `modifiers` (e.g. ``("GA",)`` when an ABN is on file) are added to every
    test. Raises IllegalTransitionError (a WorkflowError) when the order is not in a
    releasable state. `version_claimed`: the caller's action already took the order's
    row_version in this transaction (`lifecycle.transition`)."""
    lifecycle.check(order.status, OrderStatus.RELEASED, OrderEventKind.RELEASED, order.id)
    if order.id is None:
        session.flush()
    assert order.id is not None
    profile = profile or _profile
    now = utcnow()
    tests_of, diagnoses_of = parts_by_order(session, [order.id])
    tests = tests_of[order.id]
    outbound = outbound_order(order, tests, diagnoses_of[order.id], modifiers)
    control_id = new_control_id()
    message = build_order_message(outbound, profile, control_id, now)
    return _record(
        session, order, outbound, tests, control_id, message, profile, actor, now, version_claimed
    )


def parts_by_order(
    session: Session, order_ids: Sequence[int]
) -> tuple[dict[int, list[OrderTest]], dict[int, list[OrderDiagnosis]]]:
    """Tests and diagnoses of many orders, two queries in all."""
    tests: dict[int, list[OrderTest]] = {i: [] for i in order_ids}
    diagnoses: dict[int, list[OrderDiagnosis]] = {i: [] for i in order_ids}
    for test in session.exec(select(OrderTest).where(col(OrderTest.order_id).in_(order_ids))):
        tests[test.order_id].append(test)
    for diagnosis in session.exec(
        select(OrderDiagnosis).where(col(OrderDiagnosis.order_id).in_(order_ids))
    ):
        diagnoses[diagnosis.order_id].append(diagnosis)
    return tests, diagnoses


def part_rows_by_order(
    session: Session, order_ids: Sequence[int]
) -> tuple[dict[int, list[Row[Any]]], dict[int, list[Row[Any]]]]:
    """Tests and diagnoses of many orders as plain rows (no ORM objects: building thousands
    of them was a fifth of a bulk release's CPU), two queries in all. Test rows carry their
    `id` and `modifiers` for the modifiers a release writes back."""
    tests: dict[int, list[Row[Any]]] = {i: [] for i in order_ids}
    diagnoses: dict[int, list[Row[Any]]] = {i: [] for i in order_ids}
    conn = session.connection()
    for test in conn.execute(select_rows(*TEST_COLUMNS).where(TESTS.c.order_id.in_(order_ids))):
        tests[test.order_id].append(test)
    for diagnosis in conn.execute(
        select_rows(*DIAGNOSIS_COLUMNS).where(DIAGNOSES.c.order_id.in_(order_ids))
    ):
        diagnoses[diagnosis.order_id].append(diagnosis)
    return tests, diagnoses
