"""The parts of one order group read into domain values: tests, diagnoses, dates, people.

Helpers of `labintake.hl7.reader` (see there for which field wins where); each takes the
segments of a group and a list to which it adds warnings.
"""

from __future__ import annotations

import re
from datetime import date

from labintake.domain import Diagnosis, Office, Provider, TestRequest
from labintake.hl7.datatypes import address, coded_value, parse_dtm, phones, provider
from labintake.hl7.segments import Segment
from labintake.hl7.structure import OrderGroup, TestGroup

MAX_UNITS = 999  # more of one test on one order is a typing slip, not a quantity
_YES = {"Y", "YES", "TRUE", "1"}
_NO = {"N", "NO", "FALSE", "0"}
_SIGNATURE = re.compile(r"SIGN", re.IGNORECASE)


def read_test(
    test: TestGroup, timing: Segment | None, warnings: list[str], extras: list[tuple[str, str]]
) -> TestRequest:
    """One OBR and what hangs below it; `timing` is the group's quantity TQ1 (see
    `quantity_timing`)."""
    obr = test.obr
    specimen = ""
    for spm in test.specimens:
        specimen = spm.text(4, 2) or spm.text(4, 1)
        if specimen:
            break
    specimen = specimen or obr.text(15, 1)
    answers = tuple(
        (obx.text(3, 2) or obx.text(3, 1), answer_text(obx)) for obx in test.observations
    )
    return TestRequest(
        service=coded_value(obr, 4),
        location=obr.loc(4),
        units=read_units(test, timing, warnings),
        specimen=specimen,
        notes=tuple(n for n in (note_text(nte) for nte in test.notes) if n),
        answers=answers,
    )


def quantity_timing(group: OrderGroup) -> Segment | None:
    """The group's first TQ1 with a quantity (TQ1-2): found once per group, not per test."""
    return next((tq1 for tq1 in group.timings if tq1.text(2, 1)), None)


def read_units(test: TestGroup, timing: Segment | None, warnings: list[str]) -> int:
    candidates = [(timing, 2)] if timing is not None else []
    for segment, number in [*candidates, (test.obr, 27)]:
        value = segment.text(number, 1)
        if not value:
            continue
        try:
            quantity = float(value)
        except ValueError:
            warnings.append(f"{segment.loc(number)} quantity {value!r} is not a number: 1 used")
            return 1
        if 1 <= quantity <= MAX_UNITS and quantity.is_integer():
            return int(quantity)
        warnings.append(
            f"{segment.loc(number)} quantity {value!r} is not a whole count from 1 to "
            f"{MAX_UNITS}: 1 used"
        )
        return 1
    return 1


def answer_text(obx: Segment) -> str:
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


def note_text(nte: Segment) -> str:
    return "\n".join(
        line for line in (nte.text(3, 1, rep) for rep in range(1, nte.repetitions(3) + 1)) if line
    )


def read_diagnosis(dg1: Segment, warnings: list[str]) -> Diagnosis | None:
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


def group_diagnoses(
    message_level: list[Diagnosis], group: OrderGroup, warnings: list[str]
) -> tuple[Diagnosis, ...]:
    found = list(message_level)
    segments = [*group.diagnoses, *(dg1 for t in group.tests for dg1 in t.diagnoses)]
    for dg1 in segments:
        diagnosis = read_diagnosis(dg1, warnings)
        if diagnosis is not None:
            found.append(diagnosis)
    kept: dict[str, Diagnosis] = {}
    for diagnosis in found:
        kept.setdefault(diagnosis.code.upper().replace(".", ""), diagnosis)
    return tuple(kept.values())


def find_date_of_service(
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


def find_priority(group: OrderGroup) -> str:
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


def ordering_provider(group: OrderGroup) -> Provider:
    found = provider(group.orc, 12) if group.orc is not None else None
    for test in group.tests:
        if found is not None:
            break
        found = provider(test.obr, 16)
    return found or Provider()


def read_office(group: OrderGroup) -> Office:
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


def signature_answer(group: OrderGroup) -> bool | None:
    observations = [*group.observations, *(o for t in group.tests for o in t.observations)]
    for obx in observations:
        if _SIGNATURE.search(obx.text(3, 1) + " " + obx.text(3, 2)):
            answer = obx.text(5, 1).upper()
            if answer in _YES:
                return True
            if answer in _NO:
                return False
    return None
