"""Reading a stored order message (ORM^O01, OML^O21) into domain orders. Pure: text in, values out.

`read_orders(text)` returns one `OrderRequest` per order group (see `structure` for how groups
are found: one ORC = one order with one or more tests; an OBR without ORC is an order of its
own). Where each value comes from, in order of preference:

- patient: PID-3 ids (MRN = first id of type MR, else the first id), PID-5, PID-7, PID-8
- insurances: every IN1 (IN1-2 plan, IN1-3 company id, IN1-4 company name)
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

import re
from dataclasses import dataclass
from datetime import date, datetime

from labintake.domain import (
    Diagnosis,
    Insurance,
    Office,
    OrderRequest,
    Patient,
    Provider,
    TestRequest,
)
from labintake.errors import OrderReadError
from labintake.hl7.datatypes import (
    address,
    coded_value,
    parse_date,
    parse_dtm,
    phones,
    provider,
)
from labintake.hl7.segments import Segment, split_segments
from labintake.hl7.structure import MessageParts, OrderGroup, TestGroup, find_groups

ORDER_MESSAGE_TYPES = ("ORM^O01", "OML^O21")
CANCEL = "CA"
NEW = "NW"
_YES = {"Y", "YES", "TRUE", "1"}
_NO = {"N", "NO", "FALSE", "0"}
_SIGNATURE = re.compile(r"SIGN", re.IGNORECASE)


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


def read_orders(text: str) -> ReadResult:
    """Read every order group of one HL7 order message; OrderReadError when nothing usable."""
    segments = split_segments(text)
    warnings: list[str] = []
    header = _header(segments.msh, warnings)
    parts = find_groups(segments)
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
        )
        for in1 in parts.insurances
    )
    message_diagnoses = [_diagnosis(dg1, warnings) for dg1 in parts.diagnoses]
    message_notes = [_note(nte) for nte in parts.notes]

    drafts: list[tuple[OrderGroup, list[str]]] = []
    errors: list[OrderReadError] = []
    for group in parts.groups:
        group_warnings: list[str] = []
        try:
            _check_group(group)
        except OrderReadError as exc:
            errors.append(exc)
        drafts.append((group, group_warnings))
    if errors:
        raise OrderReadError(
            "; ".join(e.text for e in errors),
            location=errors[0].location,
            error_code=errors[0].error_code,
        )

    orders: list[OrderRequest] = []
    for group, group_warnings in drafts:
        orders.append(
            _order(
                group,
                parts,
                header,
                patient,
                insurances,
                [d for d in message_diagnoses if d is not None],
                [n for n in message_notes if n],
                group_warnings,
            )
        )
    # Escape-sequence remarks are gathered last: reading the fields is what produces them.
    remarks = [r for segment in segments for r in segment.remarks]
    message_warnings = tuple(dict.fromkeys([*warnings, *remarks]))
    if message_warnings:
        orders = [_with_warnings(o, message_warnings) for o in orders]
    return ReadResult(header=header, orders=tuple(orders), warnings=message_warnings)


def _with_warnings(order: OrderRequest, extra: tuple[str, ...]) -> OrderRequest:
    from dataclasses import replace

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
    warnings: list[str],
) -> OrderRequest:
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
    tests = tuple(_test(test, group, warnings, extras) for test in group.tests)
    diagnoses = _diagnoses(message_diagnoses, group, warnings)
    date_of_service, source = _date_of_service(group, parts.msh, warnings)
    ordered_at = None
    if orc is not None:
        ordered_at = _moment(orc, 9, warnings)
    ordered_at = ordered_at or header.sent_at
    for obx in group.observations:
        extras.append((obx.ref, _answer_text(obx)))
    if parts.pv1 is not None:
        for number, label in ((2, "patient class"), (3, "location"), (19, "visit number")):
            if parts.pv1.text(number):
                extras.append((f"{parts.pv1.loc(number)} {label}", parts.pv1.text(number)))
    notes = (*message_notes, *(n for n in (_note(nte) for nte in group.notes) if n))
    return OrderRequest(
        group_index=group.index,
        order_control=control,
        placer_order_number=placer,
        filler_order_number=filler,
        patient=patient,
        insurances=insurances,
        provider=_provider(group),
        office=_office(group),
        tests=tests,
        diagnoses=diagnoses,
        date_of_service=date_of_service,
        ordered_at=ordered_at,
        priority=_priority(group),
        notes=notes,
        signature_on_file=_signature(group),
        warnings=tuple(warnings),
        date_of_service_source=source,
        extras=tuple(extras),
    )


def _test(
    test: TestGroup, group: OrderGroup, warnings: list[str], extras: list[tuple[str, str]]
) -> TestRequest:
    obr = test.obr
    specimen = ""
    for spm in test.specimens:
        specimen = spm.text(4, 2) or spm.text(4, 1)
        if specimen:
            break
    specimen = specimen or obr.text(15, 1)
    answers = tuple(
        (obx.text(3, 2) or obx.text(3, 1), _answer_text(obx)) for obx in test.observations
    )
    return TestRequest(
        service=coded_value(obr, 4),
        location=obr.loc(4),
        units=_units(test, group, warnings),
        specimen=specimen,
        notes=tuple(n for n in (_note(nte) for nte in test.notes) if n),
        answers=answers,
    )


def _units(test: TestGroup, group: OrderGroup, warnings: list[str]) -> int:
    candidates = [(tq1, 2) for tq1 in group.timings] + [(test.obr, 27)]
    for segment, number in candidates:
        value = segment.text(number, 1)
        if not value:
            continue
        try:
            quantity = float(value)
        except ValueError:
            warnings.append(f"{segment.loc(number)} quantity {value!r} is not a number: 1 used")
            return 1
        if quantity >= 1 and quantity == int(quantity):
            return int(quantity)
        warnings.append(f"{segment.loc(number)} quantity {value!r} is not a whole count: 1 used")
        return 1
    return 1


def _answer_text(obx: Segment) -> str:
    value_type = obx.text(2).upper()
    values: list[str] = []
    for rep in range(1, obx.repetitions(5) + 1):
        if value_type in ("CE", "CWE", "CNE"):
            value = obx.text(5, 2, rep) or obx.text(5, 1, rep)
        else:
            value = " ".join(c for c in obx.components(5, rep) if c)
        if value:
            values.append(value)
    text = "; ".join(values)
    unit = obx.text(6, 1)
    return f"{text} {unit}" if text and unit else text


def _note(nte: Segment) -> str:
    return "\n".join(
        line for line in (nte.text(3, 1, rep) for rep in range(1, nte.repetitions(3) + 1)) if line
    )


def _diagnosis(dg1: Segment, warnings: list[str]) -> Diagnosis | None:
    code = dg1.text(3, 1).replace(" ", "")
    if not code:
        warnings.append(f"{dg1.loc(3)} empty: diagnosis ignored")
        return None
    return Diagnosis(
        code=code,
        text=dg1.text(3, 2) or dg1.text(4),
        system=dg1.text(3, 3) or dg1.text(2),
        location=dg1.loc(3),
    )


def _diagnoses(
    message_level: list[Diagnosis], group: OrderGroup, warnings: list[str]
) -> tuple[Diagnosis, ...]:
    found = list(message_level)
    segments = [*group.diagnoses, *(dg1 for t in group.tests for dg1 in t.diagnoses)]
    for dg1 in segments:
        diagnosis = _diagnosis(dg1, warnings)
        if diagnosis is not None:
            found.append(diagnosis)
    kept: dict[str, Diagnosis] = {}
    for diagnosis in found:
        kept.setdefault(diagnosis.code.upper().replace(".", ""), diagnosis)
    return tuple(kept.values())


def _date_of_service(
    group: OrderGroup, msh: Segment, warnings: list[str]
) -> tuple[date | None, str]:
    obrs = [t.obr for t in group.tests]
    candidates: list[tuple[Segment, int, int]] = [(obr, 7, 1) for obr in obrs]
    candidates += [(spm, 17, 1) for t in group.tests for spm in t.specimens]
    candidates += [(tq1, 7, 1) for tq1 in group.timings]
    if group.orc is not None:
        candidates.append((group.orc, 7, 4))
    candidates += [(obr, 27, 4) for obr in obrs]
    candidates += [(obr, 6, 1) for obr in obrs]
    if group.orc is not None:
        candidates.append((group.orc, 9, 1))
    candidates.append((msh, 7, 1))
    for segment, number, component in candidates:
        value = segment.text(number, component)
        if not value:
            continue
        location = segment.loc(number, component if component != 1 else None)
        try:
            moment = parse_dtm(value)
        except ValueError as exc:
            warnings.append(f"{location} {exc}; not used as the date of service")
            continue
        if moment is not None:
            return moment.date(), location
    return None, ""


def _priority(group: OrderGroup) -> str:
    candidates: list[tuple[Segment, int, int]] = [(t.obr, 27, 6) for t in group.tests]
    candidates += [(tq1, 9, 1) for tq1 in group.timings]
    if group.orc is not None:
        candidates.append((group.orc, 7, 6))
    candidates += [(t.obr, 5, 1) for t in group.tests]
    for segment, number, component in candidates:
        value = segment.text(number, component).upper()
        if value:
            return value
    return ""


def _provider(group: OrderGroup) -> Provider:
    found = provider(group.orc, 12) if group.orc is not None else None
    for test in group.tests:
        if found is not None:
            break
        found = provider(test.obr, 16)
    return found or Provider()


def _office(group: OrderGroup) -> Office:
    orc = group.orc
    callback = ""
    if orc is not None:
        callback = phones(orc, 14)[0]
    for test in group.tests:
        callback = callback or phones(test.obr, 17)[0]
    if orc is None:
        return Office(callback_phone=callback)
    phone, fax = phones(orc, 23)
    return Office(
        name=orc.text(21),
        address=address(orc, 22) or address(orc, 24),
        phone=phone,
        fax=fax,
        callback_phone=callback,
    )


def _signature(group: OrderGroup) -> bool | None:
    observations = [*group.observations, *(o for t in group.tests for o in t.observations)]
    for obx in observations:
        if _SIGNATURE.search(obx.text(3, 1) + " " + obx.text(3, 2)):
            answer = obx.text(5, 1).upper()
            if answer in _YES:
                return True
            if answer in _NO:
                return False
    return None
