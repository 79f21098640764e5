"""Compliant office queries: indicators cited, neutral choices, no code proposed, no payment."""

from __future__ import annotations

from labintake.models.orders import Finding, Order, OrderDiagnosis, OrderTest
from labintake.models.queue import OfficeQuery
from labintake.queue.office_query import (
    OTHER,
    UNDETERMINED,
    compliance_problems,
    compose_query,
)
from labintake.queue.query_pdf import render_query_pdf


def _finding(code: str, clarify: str = "") -> Finding:
    return Finding(
        order_id=1, verification_id=1, code=code, severity="hold", message="m", clarify=clarify
    )


ORDER = Order(message_id=1, group_index=1, patient_family_name="Nguyễn", patient_given_name="Thảo")
TESTS = [OrderTest(order_id=1, seq=1, sent_code="84153", sent_text="PSA")]
DX = [OrderDiagnosis(order_id=1, seq=1, code="Z12.5", text="Screening for prostate cancer")]


def test_query_cites_the_order_and_offers_other_and_clinically_undetermined() -> None:
    draft = compose_query(ORDER, [_finding("SCREENING_ON_DIAGNOSTIC")], DX, TESTS)
    assert "Test ordered: PSA (as sent: 84153)" in draft.indicators
    assert "Reason given on the order: Z12.5 Screening for prostate cancer" in draft.indicators
    assert OTHER in draft.choices
    assert UNDETERMINED in draft.choices
    assert "screening" in draft.question


def test_query_never_proposes_a_code_or_mentions_payment() -> None:
    findings = [
        _finding(code) for code in ("NECESSITY_NOT_SUPPORTED", "DX_NOT_BILLABLE", "DX_MISSING")
    ]
    draft = compose_query(ORDER, findings, DX, TESTS)
    text = "\n".join([draft.question, *draft.indicators, *draft.choices])
    assert compliance_problems(text, ["Z12.5"]) == []


def test_compliance_check_catches_payment_words_and_codes_not_on_the_order() -> None:
    assert compliance_problems("Medicare will not pay for this", []) == [
        "mentions 'Medicare'",
        "mentions 'pay'",
    ]
    assert compliance_problems("Would E11.9 fit?", ["E11"]) == [
        "names a code not on the order: E11.9"
    ]


def test_sender_text_with_payment_words_is_left_out_of_the_indicators() -> None:
    dx = [OrderDiagnosis(order_id=1, seq=1, code="R99", text="covered by Medicare")]
    draft = compose_query(ORDER, [_finding("NECESSITY_NOT_SUPPORTED")], dx, TESTS)
    assert all("Medicare" not in line for line in draft.indicators)


def test_pdf_renders_names_outside_latin1() -> None:
    query = OfficeQuery(
        id=3, order_id=1, actor="ann", question="Q?", indicators=["i"], choices=[OTHER]
    )
    assert render_query_pdf(ORDER, query).startswith(b"%PDF")
