"""From read orders to rows: test code resolution through the sender's interface, and rows
crossing the reading sandbox's pipe (pickled) unchanged."""

from __future__ import annotations

import pickle
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

from labintake.domain import CodedValue
from labintake.domain import TestRequest as Requested
from labintake.interfaces import Interface, load_interfaces
from labintake.reading.plan import MessagePlan, plan_message
from labintake.reading.rows import (
    DETAILS_KEYS,
    DIAGNOSIS_KEYS,
    ORDER_KEYS,
    TEST_KEYS,
    OrderRows,
    resolve_codes,
    to_utc,
)


def _test(code: str, system: str = "", alt: str = "", alt_system: str = "") -> Requested:
    service = CodedValue(code=code, system=system, alt_code=alt, alt_system=alt_system)
    return Requested(service=service, location="OBR[1]-4")


def _interface(system: str, codes: dict[str, str]) -> Interface:
    return Interface("x", "A", "B", test_code_system=system, test_codes=codes)


def test_loinc_and_cpt_only_from_a_named_coding_system() -> None:
    local = _interface("local", {"LAB1": "CBCD"})
    assert resolve_codes(_test("LAB1", "L", "57021-8", "LN"), local) == ("CBCD", "57021-8", None)
    assert resolve_codes(_test("85025", "C4"), local) == (None, None, "85025")
    assert resolve_codes(_test("85025", "CPT"), None) == (None, None, "85025")
    assert resolve_codes(_test("85025"), local) == (None, None, None)
    assert resolve_codes(_test("85025", "L"), _interface("CPT", {})) == (None, None, None)


def test_interface_code_system_speaks_when_the_message_names_none() -> None:
    assert resolve_codes(_test("4548-4"), _interface("LN", {"4548-4": "HBA1C"})) == (
        "HBA1C",
        "4548-4",
        None,
    )
    assert resolve_codes(_test("83036"), _interface("CPT", {})) == (None, None, "83036")


def test_local_code_found_by_the_alternate_code_too() -> None:
    interface = _interface("local", {"X9": "TSH"})
    assert resolve_codes(_test("84443", "CPT", "X9", "L"), interface) == ("TSH", None, "84443")


def test_times_without_offset_are_the_senders_local_time() -> None:
    assert to_utc(datetime(2024, 7, 1, 8, 0), "America/Chicago") == datetime(
        2024, 7, 1, 13, 0, tzinfo=UTC
    )
    aware = datetime(2024, 7, 1, 8, 0, tzinfo=UTC)
    assert to_utc(aware, "America/Chicago") == aware
    assert to_utc(None, "UTC") is None


def _sample_plans() -> list[MessagePlan]:
    """The plan of every interface sample message (new orders, cancels, unreadable ones)."""
    repo = Path(__file__).resolve().parent.parent
    registry = load_interfaces(repo / "interfaces")
    samples = sorted((repo / "interfaces").glob("*/samples/*.hl7"))
    assert samples
    return [
        plan_message(number, path.read_bytes(), "", "", "", registry)
        for number, path in enumerate(samples, start=1)
    ]


def test_plans_come_back_from_a_pickle_as_they_were() -> None:
    plans = _sample_plans()
    assert any(plan.orders for plan in plans)
    assert any(plan.cancels for plan in plans)
    assert any(plan.error for plan in plans)
    for plan in plans:
        back = pickle.loads(pickle.dumps(plan))
        assert back == plan
        for rows, again in zip(plan.orders, back.orders, strict=True):
            # the same keys in the same order (the JSON of `details` is stored as it came)
            assert list(again.order) == list(rows.order)
            assert list(again.order["details"]) == list(rows.order["details"])
            assert [list(t) for t in again.tests] == [list(t) for t in rows.tests]
            assert [list(d) for d in again.diagnoses] == [list(d) for d in rows.diagnoses]
            assert again.order["ordered_at"] == rows.order["ordered_at"]
            if rows.order["ordered_at"] is not None:
                assert again.order["ordered_at"].tzinfo is UTC


def test_rows_as_order_rows_makes_them_cross_as_values_without_their_names() -> None:
    rows = next(rows for plan in _sample_plans() for rows in plan.orders)
    assert tuple(rows.order) == ORDER_KEYS
    assert tuple(rows.order["details"]) == DETAILS_KEYS
    assert all(tuple(t) == TEST_KEYS for t in rows.tests)
    assert all(tuple(d) == DIAGNOSIS_KEYS for d in rows.diagnoses)
    assert b"patient_family_name" not in pickle.dumps(rows)


def test_rows_of_another_shape_pickle_as_they_are() -> None:
    rows = next(rows for plan in _sample_plans() for rows in plan.orders)
    naive = {**rows.order, "ordered_at": datetime(2026, 1, 2, 3, 4)}
    offset = {
        **rows.order,
        "ordered_at": datetime(2026, 1, 2, 3, tzinfo=timezone(timedelta(hours=2))),
    }
    extra = {**rows.order, "created_at": datetime(2026, 1, 2, tzinfo=UTC)}
    dated = {**rows.order, "date_of_service": datetime(2026, 1, 2)}
    plain = {**rows.order, "details": "not a dict"}
    for order in (naive, offset, extra, dated, plain):
        odd = OrderRows(order, [{**t, "order_id": 7} for t in rows.tests], [{"code": "X"}])
        back = pickle.loads(pickle.dumps(odd))
        assert back == odd
        assert list(back.order) == list(odd.order)
        assert type(back.order["date_of_service"]) is type(odd.order["date_of_service"])
