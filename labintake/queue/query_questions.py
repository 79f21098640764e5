"""What a query asks for each kind of finding, and the answers it offers to that question.

Each question is about documentation, never about codes or payment (`office_query` checks
the text). The choices fit the question: a question about the clinical reason offers "the
reason is documented", "other" and "clinically undetermined"; a question about the ordering
provider's NPI or about which test is ordered offers a line to state it and "other", and no
clinical choice. Every set ends with "Other (please describe)".
"""

from __future__ import annotations

from dataclasses import dataclass

OTHER = "Other (please describe)"
UNDETERMINED = "Clinically undetermined"
REASON_DOCUMENTED = (
    "The reason for the test is documented in the patient's record (please state it)"
)

# Answers offered, by what the question asks.
REASON_CHOICES = (REASON_DOCUMENTED, OTHER, UNDETERMINED)
SPECIFICITY_CHOICES = (
    "The record documents the condition in more detail (please state it as documented)",
    "The record documents no further detail",
    OTHER,
    UNDETERMINED,
)
WHICH_CONDITIONS_CHOICES = (
    "The record documents each condition listed",
    "The record documents only some of them (please state which)",
    OTHER,
    UNDETERMINED,
)
UNDERLYING_CHOICES = (
    "The underlying condition is documented in the patient's record (please state it)",
    OTHER,
    UNDETERMINED,
)
SCREENING_CHOICES = (
    "The test is for screening",
    "The test is for a documented sign, symptom or condition (please state it)",
    OTHER,
    UNDETERMINED,
)
REPEAT_CHOICES = (
    "The reason for repeating the test is documented in the patient's record (please state it)",
    OTHER,
    UNDETERMINED,
)
PATIENT_DETAILS_CHOICES = (
    "The patient's details on the order are correct, and the reason is documented "
    "(please state it)",
    "The patient's details on the order need correcting (please give them)",
    OTHER,
    UNDETERMINED,
)
TEST_CHOICES = ("The test ordered is (please name it): ____________", OTHER)
PANEL_CHOICES = (
    "The panel only",
    "The panel and each test listed with it (please state the reason for each)",
    OTHER,
)
UNITS_CHOICES = ("The number ordered is: ______", OTHER)
PROVIDER_CHOICES = ("The ordering provider is (name and NPI): ____________________", OTHER)
NPI_CHOICES = ("The ordering provider's NPI is: ______________", OTHER)
DUPLICATE_CHOICES = (
    "Both orders are intended (please state why)",
    "One order only: the other was sent in error",
    OTHER,
)
SIGNATURE_CHOICES = (
    "The order is authenticated by the ordering provider (signed copy attached)",
    OTHER,
)
GENERIC_CHOICES = ("The answer is documented in the patient's record (please state it)", OTHER)


@dataclass(frozen=True, slots=True)
class Asked:
    """One kind of question: its text and the answers it offers."""

    text: str
    choices: tuple[str, ...]


QUESTIONS: dict[str, Asked] = {
    "DX_MISSING": Asked(
        "The order does not state a reason for the test(s). Please state the reason for each "
        "test as documented in the patient's record.",
        REASON_CHOICES,
    ),
    "DX_INVALID": Asked(
        "This diagnosis could not be read as written. Please state the reason for the test(s) "
        "as documented in the patient's record.",
        REASON_CHOICES,
    ),
    "DX_NOT_BILLABLE": Asked(
        "This diagnosis is less specific than the record may allow. Please clarify the "
        "condition as documented (for example type, site, laterality or episode, where the "
        "record supports it).",
        SPECIFICITY_CHOICES,
    ),
    "DX_NOT_EFFECTIVE": Asked(
        "This diagnosis was not in use on the date of service as written. Please state the "
        "condition as documented in the patient's record.",
        REASON_CHOICES,
    ),
    "DX_EXCLUDES1": Asked(
        "These conditions are normally not reported together. Please clarify which "
        "condition(s) the record documents.",
        WHICH_CONDITIONS_CHOICES,
    ),
    "DX_UNSPECIFIED_WITH_SPECIFIC": Asked(
        "The order describes a condition both in general terms and more specifically. Please "
        "clarify the condition(s) the record documents.",
        WHICH_CONDITIONS_CHOICES,
    ),
    "DX_EXTERNAL_CAUSE_ONLY": Asked(
        "The order states how an injury or condition came about, but not the condition "
        "itself. Please state the reason for the test (the injury, condition, sign or "
        "symptom) as documented in the patient's record.",
        REASON_CHOICES,
    ),
    "DX_MANIFESTATION_ALONE": Asked(
        "The order gives a condition that arises from another disease but does not state "
        "that underlying disease. Please state the underlying condition as documented in the "
        "patient's record.",
        UNDERLYING_CHOICES,
    ),
    "DX_SEX_CONFLICT": Asked(
        "This reason does not match the patient's sex as registered. Please confirm the "
        "patient's information and the reason for the test as documented in the patient's "
        "record.",
        PATIENT_DETAILS_CHOICES,
    ),
    "DX_AGE_CONFLICT": Asked(
        "This reason does not fit the patient's age from the date of birth on the order. "
        "Please confirm the patient's date of birth and the reason for the test as documented "
        "in the patient's record.",
        PATIENT_DETAILS_CHOICES,
    ),
    "NECESSITY_NOT_SUPPORTED": Asked(
        "Please state the clinical reason for the test(s) named, as documented in the patient's "
        "record.",
        REASON_CHOICES,
    ),
    "NECESSITY_UNVERIFIED": Asked(
        "Please state the clinical reason for the test(s) named, as documented in the patient's "
        "record.",
        REASON_CHOICES,
    ),
    "NECESSITY_FREQUENCY": Asked(
        "The test was also ordered recently for this patient. Please state the clinical "
        "reason for repeating it, as documented in the patient's record.",
        REPEAT_CHOICES,
    ),
    "SCREENING_ON_DIAGNOSTIC": Asked(
        "The order gives a screening reason for a test ordered as diagnostic. Please clarify "
        "whether the test is for screening or for a documented sign, symptom or condition.",
        SCREENING_CHOICES,
    ),
    "TEST_UNKNOWN": Asked(
        "This test could not be identified. Please confirm which test is ordered.",
        TEST_CHOICES,
    ),
    "TEST_CODE_MISMATCH": Asked(
        "This test carries codes naming two different tests. Please confirm which test is ordered.",
        TEST_CHOICES,
    ),
    "BUNDLED_COMPONENT": Asked(
        "The order lists a panel and tests already included in it. Please confirm which "
        "tests are ordered.",
        PANEL_CHOICES,
    ),
    "UNITS_OVER_LIMIT": Asked(
        "The order asks for more repetitions of this test than usual for one day. Please "
        "confirm the number ordered.",
        UNITS_CHOICES,
    ),
    "PROVIDER_MISSING": Asked(
        "The order does not name the ordering provider. Please state the ordering provider "
        "and their NPI.",
        PROVIDER_CHOICES,
    ),
    "PROVIDER_NPI_INVALID": Asked(
        "The ordering provider's NPI on the order could not be confirmed. Please state the "
        "ordering provider's NPI.",
        NPI_CHOICES,
    ),
    "DUPLICATE_ORDER": Asked(
        "The same test appears to have been ordered twice for this patient on this date. "
        "Please confirm whether both orders are intended.",
        DUPLICATE_CHOICES,
    ),
    "SIGNATURE_MISSING": Asked(
        "Please confirm the order is authenticated by the ordering provider.",
        SIGNATURE_CHOICES,
    ),
}
GENERIC = Asked("Please clarify the order as documented in the patient's record.", GENERIC_CHOICES)
# Questions about who ordered: they name the provider as sent, not a test or a diagnosis.
ABOUT_PROVIDER = frozenset({"PROVIDER_MISSING", "PROVIDER_NPI_INVALID", "SIGNATURE_MISSING"})
# Questions about the order's tests only (which test, how many): no diagnosis is named.
ABOUT_TESTS_ONLY = frozenset(
    {
        "TEST_UNKNOWN",
        "TEST_CODE_MISMATCH",
        "BUNDLED_COMPONENT",
        "UNITS_OVER_LIMIT",
        "DUPLICATE_ORDER",
    }
)


def asked_for(code: str) -> Asked:
    """The question and choices for a finding code; an unlisted code gets the open one."""
    return QUESTIONS.get(code, GENERIC)
