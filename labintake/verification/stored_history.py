"""Reading a patient's history for verification.

History is the other orders of the same patient (the beneficiary key: MBI, else sending
facility and MRN), inside the longest frequency window of the coverage tables, excluding
cancelled, rejected and unreadable orders, and excluding the other orders of the same message
(those are verified together with it, not read as history); each prior test says whether its
order is held back (held, awaiting the office), as those do not count toward frequency limits
until released, and carries its units. For the same date of service only orders received
earlier count, so of two identical orders the later one is the duplicate. Read as plain rows,
as in `labintake.verification.stored`.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import date, timedelta
from typing import Any

from sqlalchemy import bindparam
from sqlalchemy import select as columns
from sqlmodel import Session

from labintake.codes.icd10 import normalize_icd10
from labintake.codes.tables import CodeTables
from labintake.statuses import QUEUE_STATUSES
from labintake.verification.facts import PatientHistory, PriorTest
from labintake.verification.stored import (
    DIAGNOSES,
    IDS,
    NOT_HISTORY,
    ORDERS,
    TESTS,
    StoredOrder,
    chunks,
    resolve_codes,
    service_date,
)

MIN_WINDOW_DAYS = 366
LIFETIME_DAYS = 366 * 30  # "once in a lifetime" with no start date given


def history_window(tables: CodeTables, dates: Iterable[date]) -> int:
    """Days of history the frequency limits in force on these dates need."""
    window = MIN_WINDOW_DAYS
    for day in set(dates):
        policies = tables.policies_for(day)
        for policy in (*policies.ncds, *policies.lcds):
            for limit in policy.frequency:
                window = max(window, limit.period_days)
                if limit.period_months is not None:
                    window = max(window, 31 * limit.period_months + 31)
        for benefit in policies.screening:
            for screening in benefit.frequency:
                months = screening.window_months
                if months is not None:
                    days = 31 * months + 31
                elif screening.since is not None:  # once in a lifetime: since the benefit began
                    days = (day - screening.since).days + 1
                else:
                    days = LIFETIME_DAYS
                window = max(window, days)
    return window


_HISTORY_ORDERS = columns(
    ORDERS.c.id,
    ORDERS.c.beneficiary_key,
    ORDERS.c.date_of_service,
    ORDERS.c.placer_order_number,
    ORDERS.c.message_id,
    ORDERS.c.status,
).where(
    ORDERS.c.beneficiary_key.in_(bindparam("keys", expanding=True)),
    ORDERS.c.status.not_in(NOT_HISTORY),
    ORDERS.c.date_of_service >= bindparam("start", type_=ORDERS.c.date_of_service.type),
    ORDERS.c.date_of_service <= bindparam("end", type_=ORDERS.c.date_of_service.type),
)
_HISTORY_TESTS = columns(
    TESTS.c.order_id,
    TESTS.c.local_code,
    TESTS.c.cpt,
    TESTS.c.sent_code,
    TESTS.c.sent_system,
    TESTS.c.sent_alt_code,
    TESTS.c.sent_alt_system,
    TESTS.c.units,
).where(TESTS.c.order_id.in_(IDS))
_HISTORY_DIAGNOSES = columns(DIAGNOSES.c.code, DIAGNOSES.c.order_id).where(
    DIAGNOSES.c.order_id.in_(IDS), DIAGNOSES.c.active
)


def load_histories(
    session: Session, stored: Sequence[StoredOrder], tables: CodeTables
) -> dict[int, PatientHistory]:
    """Each order's patient history (keyed by order id)."""
    keys = {s.id: s.order.beneficiary_key for s in stored}
    wanted = [s for s in stored if keys[s.id]]
    histories: dict[int, PatientHistory] = {s.id: PatientHistory() for s in stored}
    if not wanted:
        return histories
    dates = [service_date(s.order) for s in wanted]
    start = min(dates) - timedelta(days=history_window(tables, dates))
    wanted_keys = sorted({keys[s.id] for s in wanted})
    # plain rows, not ORM objects: a busy patient can bring many orders
    others: dict[int, tuple[str, date, str, bool]] = {}
    message_of: dict[int, int] = {}
    for part in chunks(wanted_keys):
        rows = session.execute(
            _HISTORY_ORDERS, {"keys": part, "start": start, "end": max(dates)}
        ).all()
        for order_id, key, dos, placer, message_id, status in rows:
            # orders held for a coder or the office may still be rejected: their tests do not
            # count toward frequency limits until released. Received orders count (they are
            # verified in the same batch, before their own status changes), as do verified,
            # released and delivered ones.
            others[order_id] = (key, dos, placer, status not in QUEUE_STATUSES)
            message_of[order_id] = message_id
    if not others:
        return histories
    ids = sorted(others)
    tests: dict[int, list[tuple[Any, ...]]] = defaultdict(list)
    diagnoses: dict[int, list[str]] = defaultdict(list)
    for chunk in chunks(ids):
        bound = {"ids": chunk}
        for row in session.execute(_HISTORY_TESTS, bound).all():
            tests[row[0]].append(tuple(row))
        for code, order_id in session.execute(_HISTORY_DIAGNOSES, bound).all():
            diagnoses[order_id].append(normalize_icd10(code))
    catalog = tables.catalog
    priors: dict[int, list[PriorTest]] = {}

    def priors_of(order_id: int) -> list[PriorTest]:
        found = priors.get(order_id)
        if found is not None:
            return found
        _, dos, placer, performed = others[order_id]
        ref = f"#{order_id}" + (f" {placer}" if placer else "")
        dx = tuple(diagnoses.get(order_id, ()))
        items = []
        for _, local, cpt, code, system, alt, alt_system, units in tests.get(order_id, ()):
            entry = resolve_codes(catalog, local, code, system, alt, alt_system)
            items.append(
                PriorTest(
                    date_of_service=dos,
                    cpt=entry.cpt if entry is not None else cpt,
                    local_code=entry.code if entry is not None else local,
                    diagnoses=dx,
                    order_ref=ref,
                    units=units or 1,
                    performed=performed,
                )
            )
        priors[order_id] = items
        return items

    by_patient: dict[str, list[int]] = defaultdict(list)
    for order_id, (key, *_) in others.items():
        by_patient[key].append(order_id)
    # The orders of one message usually have the same earlier orders: one history object
    # for them all, which the engine then indexes once (labintake.verification.history).
    shared: dict[tuple[int, ...], PatientHistory] = {}
    for s in wanted:
        dos = service_date(s.order)
        earlier: list[int] = []
        for order_id in by_patient.get(keys[s.id], ()):
            other_dos = others[order_id][1]
            if order_id == s.id or other_dos > dos or message_of[order_id] == s.order.message_id:
                continue
            if other_dos == dos and order_id > s.id:
                continue  # received later: that one is the duplicate, not this
            earlier.append(order_id)
        key = tuple(earlier)
        history = shared.get(key)
        if history is None:
            history = shared[key] = PatientHistory(
                tuple(prior for order_id in earlier for prior in priors_of(order_id))
            )
        histories[s.id] = history
    return histories
