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


def _finding(
    code: str, clarify: str = "", *, test_seq: int | None = None, subject: str = ""
) -> Finding:
    return Finding(
        order_id=1,
        verification_id=1,
        code=code,
        severity="hold",
        message="m",
        clarify=clarify,
        test_seq=test_seq,
        reference={"subject": subject} if subject else {},
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


def test_sender_text_with_payment_words_loses_the_words_not_the_line() -> None:
    dx = [OrderDiagnosis(order_id=1, seq=1, code="R07.9", text="Chest pain, Medicare covered")]
    draft = compose_query(ORDER, [_finding("NECESSITY_NOT_SUPPORTED")], dx, TESTS)
    assert "Reason given on the order: R07.9 Chest pain," in draft.indicators
    assert "Test ordered: PSA (as sent: 84153)" in draft.indicators
    assert all("Medicare" not in line and "covered" not in line for line in draft.indicators)


def test_a_hcpcs_test_code_is_never_taken_for_a_diagnosis_code() -> None:
    tests = [OrderTest(order_id=1, seq=1, sent_code="G0103", sent_text="PSA screening")]
    draft = compose_query(ORDER, [_finding("NECESSITY_NOT_SUPPORTED", test_seq=1)], DX, tests)
    assert "Test ordered: PSA screening (as sent: G0103)" in draft.indicators
    assert "(as sent: G0103)" in draft.question
    text = "\n".join([draft.question, *draft.indicators])
    assert compliance_problems(text, ["Z12.5", "G0103"]) == []


def test_a_code_not_on_the_order_is_removed_from_the_sender_text_and_the_rest_kept() -> None:
    tests = [OrderTest(order_id=1, seq=1, sent_code="82947", sent_text="Glucose, E11.9 suspected")]
    dx = [OrderDiagnosis(order_id=1, seq=1, code="R73.09", text="Abnormal glucose")]
    draft = compose_query(ORDER, [_finding("DX_NOT_BILLABLE", subject="R73.09")], dx, tests)
    assert "Test ordered: Glucose, suspected (as sent: 82947)" in draft.indicators
    assert "E11.9" not in "\n".join([draft.question, *draft.indicators])


def test_each_question_names_its_test_and_diagnosis() -> None:
    findings = [
        _finding("NECESSITY_NOT_SUPPORTED", test_seq=1),
        _finding("DX_EXCLUDES1", subject="Z12.5|C61"),
        _finding("PROVIDER_MISSING"),
    ]
    draft = compose_query(ORDER, findings, DX, TESTS)
    lines = draft.question.split("\n")
    assert lines[0].startswith(
        "About the test PSA (as sent: 84153), with the reason given as Z12.5 Screening for "
        "prostate cancer: Please state the clinical reason"
    )
    assert lines[1].startswith(
        "About the reason given as Z12.5 Screening for prostate cancer: Two conditions"
    )
    assert lines[2].startswith("About the order as a whole: The order does not name")
    assert "C61" not in draft.question  # not sent: never named


def test_pdf_renders_names_outside_latin1() -> None:
    query = OfficeQuery(
        id=3, order_id=1, actor="ann", question="Q?", indicators=["i"], choices=[OTHER]
    )
    assert render_query_pdf(ORDER, query).startswith(b"%PDF")


def test_a_coders_own_task_is_not_asked_of_the_office() -> None:
    draft = compose_query(ORDER, [_finding("TEST_MEDICARE_PARTS", test_seq=1)], DX, TESTS)
    assert draft.question == "Please clarify the order as documented in the patient's record."
