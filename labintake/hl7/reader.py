"""Reading a stored order message (ORM^O01, OML^O21) into domain orders. Pure: text in, values out.

`read_orders(text)` returns one `OrderRequest` per order group (see `structure` for how groups
are found: one ORC = one order with one or more tests; an OBR without ORC is an order of its
own). Where each value comes from, in order of preference:

- patient: PID-3 ids (MRN = first id of type MR, else the first id), PID-5, PID-7, PID-8
- insurances: every IN1 (IN1-2 plan, IN1-3 company id, IN1-4 company name, IN1-36 policy
  number else IN1-49 insured's id as the member id)
- ordering provider: ORC-12, else OBR-16 (the repetition carrying an NPI wins)
- office: ORC-21 name, ORC-22 address (else ORC-24), ORC-23 phone/fax, ORC-14 call-back
  phone (else OBR-17)
- placer order number: ORC-2, else OBR-2; filler: ORC-3, else OBR-3; order control: ORC-1
- tests: OBR-4 as sent; units from TQ1-2 or OBR-27.1; specimen from SPM-4 or OBR-15
- diagnoses: DG1-3 at message level (before any order group), in the group, after each
  OBR; the same code twice is kept once (first place wins); locations point at the segment
- priority: OBR-27.6, TQ1-9, ORC-7.6, OBR-5
- date of service: OBR-7 (collection), SPM-17 (collection), TQ1-7 (start), OBR-27.4 /
  ORC-7.4 (start), OBR-6 (requested), ORC-9 (entered), MSH-7 (sent) - the first readable
  one; `date_of_service_source` says which. A requested date comes before the entry date
  because it is the closer guess of when the specimen will be drawn.
- ordered at: ORC-9, else MSH-7
- signature: an OBX whose question mentions a signature, answered Y/N

Errors (`OrderReadError`: the message gives nothing usable, it goes to the error queue):
not HL7, not an order message type, no PID, no patient id, no ORC/OBR, an order without a
test, an OBR-4 without a code, a cancel without a placer order number.
Warnings (the order is read; `OrderRequest.warnings` says what was left out): unreadable
dates (birth date, times), empty DG1-3, missing name or placer number, unknown order
control, escape sequences that cannot be honoured, lines that are not segments.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import date, datetime

from labintake.domain import (
    Diagnosis,
    Insurance,
    OrderRequest,
    Patient,
)
from labintake.errors import OrderReadError
from labintake.hl7.datatypes import coded_value, parse_date, parse_dtm
from labintake.hl7.limits import ReadingLimits, check_groups, check_repetitions
from labintake.hl7.order_fields import (
    answer_text,
    find_date_of_service,
    find_priority,
    group_diagnoses,
    note_text,
    ordering_provider,
    quantity_timing,
    read_diagnosis,
    read_office,
    read_test,
    signature_answer,
)
from labintake.hl7.segments import Segment, split_segments
from labintake.hl7.structure import MessageParts, OrderGroup, find_groups

ORDER_MESSAGE_TYPES = ("ORM^O01", "OML^O21")
CANCEL = "CA"
NEW = "NW"


@dataclass(frozen=True, slots=True)
class MessageHeader:
    sending_application: str
    sending_facility: str
    receiving_application: str
    receiving_facility: str
    control_id: str
    message_type: str  # "ORM^O01"
    version: str
    charset: str
    sent_at: datetime | None
    accept_ack_type: str = ""
    application_ack_type: str = ""


@dataclass(frozen=True, slots=True)
class ReadResult:
    header: MessageHeader
    orders: tuple[OrderRequest, ...]
    warnings: tuple[str, ...] = ()  # message-level remarks (also in every order's warnings)


def read_orders(text: str, *, limits: ReadingLimits | None = None) -> ReadResult:
    """Read every order group of one HL7 order message; OrderReadError when nothing usable,
    or when the message goes past one of `limits` (none when not given)."""
    segments = split_segments(text)
    warnings: list[str] = []
    header = _header(segments.msh, warnings)
    # No field can have more repetitions than the whole message has repetition marks.
    if limits is not None and text.count(segments.chars.repetition) >= limits.field_repetitions:
        check_repetitions(segments, limits)
    parts = find_groups(segments)
    if limits is not None:
        check_groups(parts, limits)
    warnings.extend(parts.remarks)
    if parts.pid is None:
        raise OrderReadError("no PID segment", location="PID", error_code="100")
    patient = _patient(parts.pid, warnings)
    if not parts.groups:
        raise OrderReadError(
            "no order group: the message has no ORC or OBR segment",
            location="ORC",
            error_code="100",
        )
    insurances = tuple(
        Insurance(
            plan_id=in1.text(2),
            company_id=in1.text(3),
            company_name=in1.text(4),
            location=in1.ref,
            member_id=in1.text(36) or in1.text(49, 1),
        )
        for in1 in parts.insurances
    )
    message_diagnoses = [read_diagnosis(dg1, warnings) for dg1 in parts.diagnoses]
    message_notes = [note_text(nte) for nte in parts.notes]

    errors: list[OrderReadError] = []
    for group in parts.groups:
        try:
            _check_group(group)
        except OrderReadError as exc:
            errors.append(exc)
    if errors:
        raise OrderReadError(
            "; ".join(e.text for e in errors),
            location=errors[0].location,
            error_code=errors[0].error_code,
        )
    dx = [d for d in message_diagnoses if d is not None]
    notes = [n for n in message_notes if n]
    orders = [
        _order(group, parts, header, patient, insurances, dx, notes) for group in parts.groups
    ]
    # Escape-sequence remarks are gathered last: reading the fields is what produces them.
    remarks = [r for segment in segments for r in segment.remarks]
    message_warnings = tuple(dict.fromkeys([*warnings, *remarks]))
    if message_warnings:
        orders = [_with_warnings(o, message_warnings) for o in orders]
    return ReadResult(header=header, orders=tuple(orders), warnings=message_warnings)


def _with_warnings(order: OrderRequest, extra: tuple[str, ...]) -> OrderRequest:
    return replace(order, warnings=(*extra, *order.warnings))


def _header(msh: Segment, warnings: list[str]) -> MessageHeader:
    code, trigger = msh.text(9, 1).upper(), msh.text(9, 2).upper()
    message_type = f"{code}^{trigger}"
    if message_type not in ORDER_MESSAGE_TYPES:
        defaults = {"ORM": "ORM^O01", "OML": "OML^O21"}
        if code in defaults and not trigger:
            warnings.append(f"MSH-9 {code!r} has no trigger event: read as {defaults[code]}")
            message_type = defaults[code]
        else:
            raise OrderReadError(
                f"MSH-9 {message_type!r} is not an order message "
                f"({' or '.join(ORDER_MESSAGE_TYPES)})",
                location="MSH-9",
                error_code="200",
            )
    sent_at = _moment(msh, 7, warnings)
    return MessageHeader(
        sending_application=msh.text(3),
        sending_facility=msh.text(4),
        receiving_application=msh.text(5),
        receiving_facility=msh.text(6),
        control_id=msh.text(10),
        message_type=message_type,
        version=msh.text(12),
        charset=msh.text(18),
        sent_at=sent_at,
        accept_ack_type=msh.text(15).upper(),
        application_ack_type=msh.text(16).upper(),
    )


def _moment(segment: Segment, number: int, warnings: list[str]) -> datetime | None:
    try:
        return parse_dtm(segment.text(number))
    except ValueError as exc:
        warnings.append(f"{segment.loc(number)} {exc}; left empty")
        return None


def _patient(pid: Segment, warnings: list[str]) -> Patient:
    identifiers: list[str] = []
    mrn = ""
    for rep in range(1, pid.repetitions(3) + 1):
        value = pid.text(3, 1, rep)
        if not value:
            continue
        authority, id_type = pid.text(3, 4, rep), pid.text(3, 5, rep)
        identifiers.append(f"{value}^^^{authority}^{id_type}")
        if id_type.upper() == "MR" and not mrn:
            mrn = value
    if not identifiers:
        for number in (2, 4):  # external / alternate patient id, from before v2.5
            if pid.text(number):
                identifiers.append(f"{pid.text(number)}^^^{pid.text(number, 4)}^")
                warnings.append(f"PID-3 empty: patient id taken from {pid.loc(number)}")
                break
    if not identifiers:
        raise OrderReadError(
            "PID-3 empty: no patient identifier", location="PID-3", error_code="101"
        )
    family, given = pid.text(5, 1), pid.text(5, 2)
    if not (family or given):
        warnings.append("PID-5 empty: no patient name")
    birth_date: date | None = None
    try:
        birth_date = parse_date(pid.text(7))
    except ValueError as exc:
        warnings.append(f"PID-7 {exc}; birth date left empty")
    return Patient(
        identifiers=tuple(identifiers),
        mrn=mrn or identifiers[0].split("^", 1)[0],
        family_name=family,
        given_name=given,
        birth_date=birth_date,
        sex=pid.text(8).upper(),
    )


def _check_group(group: OrderGroup) -> None:
    control = group.orc.text(1).upper() if group.orc is not None else NEW
    if control == CANCEL:
        placer = _placer(group)
        if not placer:
            raise OrderReadError(
                f"{group.first.loc(2)} empty: a cancel must name the placer order number",
                location=group.first.loc(2),
                error_code="101",
            )
        return
    if not group.tests:
        where = group.first.ref
        raise OrderReadError(
            f"{where} has no OBR: no test requested", location=where, error_code="100"
        )
    for test in group.tests:
        service = coded_value(test.obr, 4)
        if not (service.code or service.alt_code):
            raise OrderReadError(
                f"{test.obr.loc(4)} empty: no test requested",
                location=test.obr.loc(4),
                error_code="101",
            )


def _placer(group: OrderGroup) -> str:
    if group.orc is not None and group.orc.text(2):
        return group.orc.text(2)
    return next((t.obr.text(2) for t in group.tests if t.obr.text(2)), "")


def _order(
    group: OrderGroup,
    parts: MessageParts,
    header: MessageHeader,
    patient: Patient,
    insurances: tuple[Insurance, ...],
    message_diagnoses: list[Diagnosis],
    message_notes: list[str],
) -> OrderRequest:
    warnings: list[str] = []
    orc = group.orc
    control = NEW
    if orc is not None:
        control = orc.text(1).upper() or NEW
        if not orc.text(1):
            warnings.append(f"{orc.loc(1)} empty: read as NW (new order)")
        elif control not in (NEW, CANCEL):
            warnings.append(
                f"{orc.loc(1)} {control!r} read as a new order; an earlier order is not changed"
            )
    placer = _placer(group)
    if not placer and control != CANCEL:
        warnings.append(f"{group.first.loc(2)} empty: no placer order number")
    filler = (orc.text(3) if orc is not None else "") or next(
        (t.obr.text(3) for t in group.tests if t.obr.text(3)), ""
    )
    extras: list[tuple[str, str]] = [(orc.loc(1), control)] if orc is not None else []
    timing = quantity_timing(group)
    tests = tuple(read_test(test, timing, warnings, extras) for test in group.tests)
    diagnoses = group_diagnoses(message_diagnoses, group, warnings)
    date_of_service, source = find_date_of_service(group, parts.msh, warnings)
    ordered_at = None
    if orc is not None:
        ordered_at = _moment(orc, 9, warnings)
    ordered_at = ordered_at or header.sent_at
    for obx in group.observations:
        extras.append((obx.ref, answer_text(obx)))
    if parts.pv1 is not None:
        for number, label in ((2, "patient class"), (3, "location"), (19, "visit number")):
            if parts.pv1.text(number):
                extras.append((f"{parts.pv1.loc(number)} {label}", parts.pv1.text(number)))
    notes = (*message_notes, *(n for n in (note_text(nte) for nte in group.notes) if n))
    return OrderRequest(
        group_index=group.index,
        order_control=control,
        placer_order_number=placer,
        filler_order_number=filler,
        patient=patient,
        insurances=insurances,
        provider=ordering_provider(group),
        office=read_office(group),
        tests=tests,
        diagnoses=diagnoses,
        date_of_service=date_of_service,
        ordered_at=ordered_at,
        priority=find_priority(group),
        notes=notes,
        signature_on_file=signature_answer(group),
        warnings=tuple(warnings),
        date_of_service_source=source,
        extras=tuple(extras),
    )
