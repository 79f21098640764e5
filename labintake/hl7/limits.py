"""How much of one message the reader takes: orders, tests, notes, repetitions. Pure.

Reading is linear in the size of a message, but what comes after it is not: each order is
verified, held, shown and released on its own, verification pairs every test with the others
(bundling), and message-level notes and diagnoses are copied into every order. A message past
one of these limits is not an order a lab can work (a requisition carries a handful of tests,
a patient a handful of identifiers), and reading it would cost every later stage: it goes to
the error queue, with a reason that names the limit, what the message holds and the setting,
and can be reprocessed after the setting is raised.

Diagnoses per order is a limit too: each is a row of the order and is checked against every
test.

The checks count what the reader has already split (segments per group, one `str.count` per
field), so a message past a limit is turned away in time linear in its size.
"""

from __future__ import annotations

from dataclasses import dataclass

from labintake.errors import OrderReadError
from labintake.hl7.segments import SegmentList
from labintake.hl7.structure import MessageParts

# Defaults, generous for real feeds: an outpatient requisition carries a few tests, a batch
# ORM from a hospital some tens of orders; a patient has a few identifiers, a provider a few
# ids. Each is a setting (`LABINTAKE_MAX_...`).
MAX_ORDERS_PER_MESSAGE = 100
MAX_TESTS_PER_ORDER = 100
MAX_NOTES_PER_ORDER = 500
# A claim carries at most 12 diagnoses (837P / CMS-1500 item 21, A-L); an order listing more
# than a hundred is a feed sending the patient's whole problem list.
MAX_DIAGNOSES_PER_ORDER = 100
MAX_FIELD_REPETITIONS = 100

# HL7 table 0357 has no code for "too large to process"; 207 (application error) is the one
# that does not blame the message's syntax, which is sound.
LIMIT_ERROR_CODE = "207"


@dataclass(frozen=True, slots=True)
class ReadingLimits:
    orders_per_message: int = MAX_ORDERS_PER_MESSAGE
    tests_per_order: int = MAX_TESTS_PER_ORDER
    notes_per_order: int = MAX_NOTES_PER_ORDER
    diagnoses_per_order: int = MAX_DIAGNOSES_PER_ORDER
    field_repetitions: int = MAX_FIELD_REPETITIONS


def check_repetitions(segments: SegmentList, limits: ReadingLimits) -> None:
    """OrderReadError naming the first field with more repetitions than the limit."""
    mark = segments.chars.repetition
    most = limits.field_repetitions
    for segment in segments:
        first = 3 if segment.name == "MSH" else 1  # MSH-1/MSH-2 hold the separators
        for number in range(first, len(segment.fields)):
            value = segment.fields[number]
            if mark in value and value.count(mark) >= most:
                count = value.count(mark) + 1
                raise OrderReadError(
                    f"{segment.loc(number)} has {count:,} repetitions; at most {most:,} are "
                    "read in one field (LABINTAKE_MAX_FIELD_REPETITIONS)",
                    location=segment.loc(number),
                    error_code=LIMIT_ERROR_CODE,
                )


def check_groups(parts: MessageParts, limits: ReadingLimits) -> None:
    """OrderReadError naming the limits the order groups go past (orders, tests, notes,
    diagnoses; at most three reasons)."""
    reasons: list[str] = []
    location = ""
    if len(parts.groups) > limits.orders_per_message:
        location = parts.groups[limits.orders_per_message].first.ref
        reasons.append(
            f"the message has {len(parts.groups):,} order groups (ORC/OBR); at most "
            f"{limits.orders_per_message:,} are read in one message, {location} is the first "
            "past it (LABINTAKE_MAX_ORDERS_PER_MESSAGE)"
        )
    shared_notes, shared_diagnoses = len(parts.notes), len(parts.diagnoses)
    for group in parts.groups:
        where = group.first.ref
        if len(group.tests) > limits.tests_per_order:
            reasons.append(
                f"{where} has {len(group.tests):,} tests (OBR); at most "
                f"{limits.tests_per_order:,} are read in one order (LABINTAKE_MAX_TESTS_PER_ORDER)"
            )
            location = location or where
        notes = shared_notes + len(group.notes) + sum(len(t.notes) for t in group.tests)
        if notes > limits.notes_per_order:
            shared = f", {shared_notes:,} of them message-level" if shared_notes else ""
            reasons.append(
                f"{where} has {notes:,} notes (NTE{shared}); at most "
                f"{limits.notes_per_order:,} are read in one order (LABINTAKE_MAX_NOTES_PER_ORDER)"
            )
            location = location or where
        diagnoses = (
            shared_diagnoses + len(group.diagnoses) + sum(len(t.diagnoses) for t in group.tests)
        )
        if diagnoses > limits.diagnoses_per_order:
            shared = f", {shared_diagnoses:,} of them message-level" if shared_diagnoses else ""
            reasons.append(
                f"{where} has {diagnoses:,} diagnoses (DG1{shared}); at most "
                f"{limits.diagnoses_per_order:,} are read in one order "
                "(LABINTAKE_MAX_DIAGNOSES_PER_ORDER)"
            )
            location = location or where
        if len(reasons) >= 3:  # enough to act on; the rest would repeat the same
            break
    if reasons:
        raise OrderReadError("; ".join(reasons), location=location, error_code=LIMIT_ERROR_CODE)
