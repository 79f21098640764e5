"""Property-based fuzzing of the order reader: stored bytes -> decoded text -> domain orders."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from labintake.domain import OrderRequest
from labintake.errors import HeaderError, HL7Error
from labintake.hl7.charset import decode_message
from labintake.hl7.header import parse_header
from labintake.hl7.reader import read_orders
from labintake.mllp.framing import normalise_segments
from tests.fuzz.mutations import SEEDS, SYNTHETIC_SEEDS, fuzz_settings, hostile_messages


def _read(raw: bytes) -> str:
    """What the reading worker does with a stored message; returns the outcome's name."""
    reading = normalise_segments(raw)
    try:
        charset = parse_header(reading).charset
    except HeaderError:
        charset = ""
    text = decode_message(reading, charset).text
    refusal: HL7Error | None = None
    try:
        result = read_orders(text)
    except HL7Error as exc:
        refusal = exc
    if refusal is not None:
        assert refusal.text
        return type(refusal).__name__
    assert result.orders
    for order in result.orders:
        assert isinstance(order, OrderRequest)
    return "read"


def test_synthetic_seed_messages_read_and_every_sample_reads_or_is_refused() -> None:
    outcomes = [_read(raw) for raw in SEEDS]
    # The synthetic seeds come first and are all readable orders; interface samples include
    # deliberately broken ones, which must be refused with an HL7 error (checked in `_read`).
    assert outcomes[: len(SYNTHETIC_SEEDS)] == ["read"] * len(SYNTHETIC_SEEDS)


def test_order_reader_never_fails_except_with_hl7_errors(
    record_property: pytest.RecordProperty,
) -> None:
    outcomes: dict[str, int] = {}

    @fuzz_settings(2500)
    @given(raw=hostile_messages())
    def run(raw: bytes) -> None:
        outcome = _read(raw)
        outcomes[outcome] = outcomes.get(outcome, 0) + 1

    run()
    # Both sides of the property were exercised: messages that read, and messages refused.
    assert outcomes.get("read", 0) > 0, outcomes
    assert sum(outcomes.values()) > outcomes.get("read", 0), outcomes
    record_property("fuzz_cases", sum(outcomes.values()))


def test_order_reader_takes_any_text_without_crashing(
    record_property: pytest.RecordProperty,
) -> None:
    cases = 0
    segment_ids = st.sampled_from(["MSH", "PID", "ORC", "OBR", "DG1", "IN1", "NTE", "OBX", "TQ1"])
    fields = st.lists(st.text(max_size=30), max_size=30).map("|".join)
    segment = st.tuples(segment_ids, fields).map(lambda s: f"{s[0]}|{s[1]}")
    messages = st.lists(segment, max_size=15).map(
        lambda segments: "MSH|^~\\&|A|B|C|D|20260101||ORM^O01|X|P|2.5.1\r" + "\r".join(segments)
    )

    @fuzz_settings(1500)
    @given(text=messages | st.text(max_size=500))
    def run(text: str) -> None:
        nonlocal cases
        cases += 1
        try:
            result = read_orders(text)
        except HL7Error:
            return
        assert result.orders

    run()
    record_property("fuzz_cases", cases)
