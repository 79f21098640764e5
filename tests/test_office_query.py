"""Compliant office queries: the tests listed, one question per finding with the answers that
fit it, indicators cited, no code proposed, no payment."""

from __future__ import annotations

from labintake.models.orders import Finding, Order, OrderDiagnosis, OrderTest
from labintake.queue.office_query import (
    OTHER,
    UNDETERMINED,
    compliance_problems,
    compose_query,
)
from labintake.queue.query_questions import NPI_CHOICES, QUESTIONS, REASON_DOCUMENTED


def _finding(
    code: str,
    clarify: str = "",
    *,
    test_seq: int | None = None,
    subject: str = "",
    location: str = "",
    finding_id: int | None = None,
) -> Finding:
    return Finding(
        id=finding_id,
        order_id=1,
        verification_id=1,
        code=code,
        severity="hold",
        location=location,
        message="m",
        clarify=clarify,
        test_seq=test_seq,
        reference={"subject": subject} if subject else {},
    )


ORDER = Order(
    message_id=1,
    group_index=1,
    patient_family_name="Nguyễn",
    patient_given_name="Thảo",
    provider_given_name="Dana",
    provider_family_name="Whitfield",
    provider_npi="1987654321",
)
TESTS = [OrderTest(order_id=1, seq=1, sent_code="84153", sent_text="PSA")]
DX = [OrderDiagnosis(order_id=1, seq=1, code="Z12.5", text="Screening for prostate cancer")]


def test_query_lists_the_tests_cites_the_order_and_offers_other_and_undetermined() -> None:
    draft = compose_query(ORDER, [_finding("SCREENING_ON_DIAGNOSTIC")], DX, TESTS)
    assert draft.tests == ("PSA (as sent: 84153)",)
    assert draft.indicators == ("Reason given on the order: Z12.5 Screening for prostate cancer",)
    assert OTHER in draft.choices
    assert UNDETERMINED in draft.choices
    assert "screening" in draft.question


def test_query_never_proposes_a_code_or_mentions_payment() -> None:
    findings = [_finding(code) for code in QUESTIONS]
    draft = compose_query(ORDER, findings, DX, TESTS)
    text = "\n".join(
        [draft.question, *draft.indicators, *draft.tests, *draft.choices]
        + [q.about for q in draft.questions]
    )
    assert compliance_problems(text, ["Z12.5", "84153"]) == []
    # one question per finding; two findings asking the very same question ask it once
    assert len(draft.questions) == len({(a.text, a.choices) for a in QUESTIONS.values()})


def test_every_choice_set_ends_with_other_and_only_clinical_ones_offer_undetermined() -> None:
    for code, asked in QUESTIONS.items():
        assert asked.choices[-1] == OTHER or asked.choices[-2:] == (OTHER, UNDETERMINED), code
    clinical = {"NECESSITY_NOT_SUPPORTED", "DX_MISSING", "SCREENING_ON_DIAGNOSTIC"}
    for code in clinical:
        assert UNDETERMINED in QUESTIONS[code].choices
    for code in ("PROVIDER_NPI_INVALID", "PROVIDER_MISSING", "TEST_UNKNOWN", "UNITS_OVER_LIMIT"):
        assert UNDETERMINED not in QUESTIONS[code].choices
        assert REASON_DOCUMENTED not in QUESTIONS[code].choices


def test_an_npi_question_names_the_provider_and_offers_the_npi_not_the_reason() -> None:
    findings = [
        _finding("NECESSITY_NOT_SUPPORTED", test_seq=1, finding_id=1),
        _finding("PROVIDER_NPI_INVALID", subject="1987654321", finding_id=2),
    ]
    draft = compose_query(ORDER, findings, DX, TESTS)
    necessity, npi = draft.questions
    assert npi.finding == "PROVIDER_NPI_INVALID"
    assert npi.about == "About the ordering provider as sent (Dana Whitfield, NPI 1987654321):"
    assert npi.choices == NPI_CHOICES
    assert REASON_DOCUMENTED not in npi.choices
    assert necessity.choices[0] == REASON_DOCUMENTED
    assert necessity.about == (
        "About the test PSA (as sent: 84153), with the reason given as Z12.5 Screening for "
        "prostate cancer:"
    )


def test_sender_text_with_payment_words_loses_the_words_not_the_line() -> None:
    dx = [OrderDiagnosis(order_id=1, seq=1, code="R07.9", text="Chest pain, Medicare covered")]
    draft = compose_query(ORDER, [_finding("NECESSITY_NOT_SUPPORTED")], dx, TESTS)
    assert "Reason given on the order: R07.9 Chest pain," in draft.indicators
    assert draft.tests == ("PSA (as sent: 84153)",)
    assert all("Medicare" not in line and "covered" not in line for line in draft.indicators)
    assert "Medicare" not in draft.questions[0].about


def test_a_hcpcs_test_code_is_never_taken_for_a_diagnosis_code() -> None:
    tests = [OrderTest(order_id=1, seq=1, sent_code="G0103", sent_text="PSA screening")]
    draft = compose_query(ORDER, [_finding("NECESSITY_NOT_SUPPORTED", test_seq=1)], DX, tests)
    assert draft.tests == ("PSA screening (as sent: G0103)",)
    assert "(as sent: G0103)" in draft.question
    text = "\n".join([draft.question, *draft.indicators])
    assert compliance_problems(text, ["Z12.5", "G0103"]) == []


def test_a_code_not_on_the_order_is_removed_from_the_sender_text_and_the_rest_kept() -> None:
    tests = [OrderTest(order_id=1, seq=1, sent_code="82947", sent_text="Glucose, E11.9 suspected")]
    dx = [OrderDiagnosis(order_id=1, seq=1, code="R73.09", text="Abnormal glucose")]
    draft = compose_query(ORDER, [_finding("DX_NOT_BILLABLE", subject="R73.09")], dx, tests)
    assert draft.tests == ("Glucose, suspected (as sent: 82947)",)
    assert "E11.9" not in "\n".join([draft.question, *draft.indicators])


def test_each_question_names_its_test_and_diagnosis() -> None:
    tests = [*TESTS, OrderTest(order_id=1, seq=2, sent_code="83036", sent_text="HbA1c")]
    findings = [
        _finding("NECESSITY_NOT_SUPPORTED", test_seq=1, finding_id=1),
        _finding("DX_EXCLUDES1", subject="Z12.5|C61", finding_id=2),
        _finding("TEST_UNKNOWN", test_seq=2, finding_id=3),
        _finding("PROVIDER_MISSING", finding_id=4),
    ]
    draft = compose_query(ORDER, findings, DX, tests)
    lines = draft.question.split("\n")
    assert lines[0].startswith(
        "About the test PSA (as sent: 84153), with the reason given as Z12.5 Screening for "
        "prostate cancer: Please state the clinical reason"
    )
    # a finding on a diagnosis names the diagnosis and the tests it was given for
    assert lines[1].startswith(
        "About the tests PSA (as sent: 84153) and HbA1c (as sent: 83036), with the reason "
        "given as Z12.5 Screening for prostate cancer: These conditions"
    )
    # a question about which test is ordered names the test, not a diagnosis
    assert lines[2].startswith("About the test HbA1c (as sent: 83036): This test could not")
    assert lines[3].startswith("About the ordering provider as sent (Dana Whitfield, NPI")
    assert "C61" not in draft.question  # not sent: never named


def test_the_same_finding_has_the_same_key_and_lab_internal_ones_none() -> None:
    first = compose_query(
        ORDER,
        [
            _finding("DX_NOT_BILLABLE", subject="Z12.5", location="DG1[1]-3"),
            _finding("CODE_TABLES_OUT_OF_DATE"),
        ],
        DX,
        TESTS,
    )
    again = compose_query(
        ORDER, [_finding("DX_NOT_BILLABLE", subject="Z12.5", location="DG1[1]-3")], DX, TESTS
    )
    assert first.finding_keys == again.finding_keys == ("DX_NOT_BILLABLE|DG1[1]-3|Z12.5",)


def test_a_coders_own_task_is_not_asked_of_the_office() -> None:
    draft = compose_query(ORDER, [_finding("TEST_MEDICARE_PARTS", test_seq=1)], DX, TESTS)
    assert draft.question == (
        "About the order as a whole: Please clarify the order as documented in the patient's "
        "record."
    )
    assert draft.finding_keys == ()


def test_a_test_named_a1c_keeps_its_name_and_real_codes_are_still_caught() -> None:
    tests = [OrderTest(order_id=1, seq=1, sent_code="83036", sent_text="HEMOGLOBIN A1C")]
    draft = compose_query(ORDER, [_finding("NECESSITY_NOT_SUPPORTED", test_seq=1)], DX, tests)
    assert draft.tests == ("HEMOGLOBIN A1C (as sent: 83036)",)
    assert compliance_problems("Would C7A.1 or E11.9 or Z3A.20 fit?", []) == [
        "names a code not on the order: C7A.1",
        "names a code not on the order: E11.9",
        "names a code not on the order: Z3A.20",
    ]
