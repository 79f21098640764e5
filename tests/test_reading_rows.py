"""From read orders to rows: test code resolution through the sender's interface."""

from __future__ import annotations

from datetime import UTC, datetime

from labintake.domain import CodedValue
from labintake.domain import TestRequest as Requested
from labintake.interfaces import Interface
from labintake.reading.rows import resolve_codes, to_utc


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
