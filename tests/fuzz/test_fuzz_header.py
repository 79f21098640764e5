"""Property-based fuzzing of the MSH header reader and the acknowledgement built from it."""

from __future__ import annotations

import pytest
from hypothesis import given

from labintake.errors import HeaderError, HL7Error
from labintake.hl7.ack import ACCEPT, ERROR, REJECT, ack_code, build_ack, reply_wanted
from labintake.hl7.header import Header, parse_header
from labintake.intake.policy import IntakePolicy
from labintake.interfaces import InterfaceRegistry
from labintake.mllp.framing import normalise_segments
from tests.fuzz.mutations import fuzz_settings, hostile_messages

POLICY = IntakePolicy(["ORM^O01", "OML^O21"], InterfaceRegistry([]), enforce_sender_allowlist=True)


def test_header_reading_and_the_reply_never_fail_except_with_header_errors(
    record_property: pytest.RecordProperty,
) -> None:
    cases = {"read": 0, "refused": 0}

    @fuzz_settings(3000)
    @given(raw=hostile_messages())
    def run(raw: bytes) -> None:
        refusal: HeaderError | None = None
        try:
            header = parse_header(normalise_segments(raw))
        except HeaderError as exc:
            refusal = exc
        if refusal is not None:
            cases["refused"] += 1
            assert refusal.text
            # The listener answers these with AR built on a default header: that must work.
            assert build_ack(Header(), "AR", refusal).startswith(b"MSH|")
            return
        cases["read"] += 1
        decision = POLICY.decide(header)
        assert decision.outcome in {ACCEPT, ERROR, REJECT}
        assert (decision.error is None) == (decision.outcome == ACCEPT)
        if decision.error is not None:
            assert isinstance(decision.error, HL7Error)
        code = ack_code(header, decision.outcome)
        assert code in {"AA", "AE", "AR", "CA", "CE", "CR"}
        ack = build_ack(header, code, decision.error)
        assert isinstance(ack, bytes)
        assert ack.startswith(b"MSH")
        assert b"\rMSA" in ack
        assert isinstance(reply_wanted(header, decision.outcome), bool)

    run()
    assert cases["read"] > 0, cases
    assert cases["refused"] > 0, cases
    record_property("fuzz_cases", cases["read"] + cases["refused"])
