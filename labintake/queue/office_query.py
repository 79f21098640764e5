"""Compliant queries to the ordering provider (AHIMA/ACDIS practice).

A query asks for the reason for the test or for documentation; it cites the indicators found
in the order as received, offers an open answer or clinically neutral choices including
"other" and "clinically undetermined", never proposes a code and never mentions payment.
The text is checked by `compliance_problems` before it is stored.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from labintake.models.orders import Finding, Order, OrderDiagnosis, OrderTest
from labintake.statuses import LAB_INTERNAL_FINDINGS

# Words a query must never contain (payment, coverage, leading language).
FORBIDDEN_WORDS = (
    "payment",
    "payable",
    "pay",
    "paid",
    "reimburse",
    "reimbursement",
    "covered",
    "coverage",
    "medicare",
    "denial",
    "denied",
    "deny",
    "abn",
    "billable",
    "bill",
    "billing",
    "ncd",
    "lcd",
    "revenue",
)
_FORBIDDEN = re.compile(r"\b(" + "|".join(FORBIDDEN_WORDS) + r")\b", re.IGNORECASE)
_ICD10_CODE = re.compile(r"\b[A-TV-Z][0-9][0-9A-Z](?:\.?[0-9A-Z]{1,4})?\b")

OTHER = "Other (please describe)"
UNDETERMINED = "Clinically undetermined"
STANDARD_CHOICES = (
    "The reason for the test is documented in the patient's record (please state it)",
    OTHER,
    UNDETERMINED,
)

# Plain-language questions per kind of finding: about documentation, never about codes.
_QUESTIONS = {
    "DX_MISSING": "The order does not state a reason for the test(s). Please state the "
    "reason for each test as documented in the patient's record.",
    "DX_INVALID": "A diagnosis on the order could not be read as written. Please state the "
    "reason for the test(s) as documented in the patient's record.",
    "DX_NOT_BILLABLE": "A diagnosis on the order is less specific than the record may allow. "
    "Please clarify the condition as documented (for example type, site, laterality or "
    "episode, where the record supports it).",
    "DX_NOT_EFFECTIVE": "A diagnosis on the order was not in use on the date of service as "
    "written. Please state the condition as documented in the patient's record.",
    "DX_EXCLUDES1": "Two conditions on the order are normally not reported together. Please "
    "clarify which condition(s) the record documents.",
    "NECESSITY_NOT_SUPPORTED": "Please state the clinical reason for the test(s) listed "
    "below, as documented in the patient's record.",
    "NECESSITY_FREQUENCY": "The test was also ordered recently for this patient. Please "
    "state the clinical reason for repeating it, as documented in the patient's record.",
    "NECESSITY_UNVERIFIED": "Please state the clinical reason for the test(s) listed below, "
    "as documented in the patient's record.",
    "SCREENING_ON_DIAGNOSTIC": "The order gives a screening reason for a test ordered as "
    "diagnostic. Please clarify whether the test is for screening or for a documented "
    "sign, symptom or condition.",
    "TEST_UNKNOWN": "A test on the order could not be identified. Please confirm which test "
    "is ordered.",
    "TEST_CODE_MISMATCH": "A test on the order carries codes naming two different tests. "
    "Please confirm which test is ordered.",
    "BUNDLED_COMPONENT": "The order lists a panel and tests already included in it. Please "
    "confirm which tests are ordered.",
    "UNITS_OVER_LIMIT": "The order asks for more repetitions of a test than usual for one "
    "day. Please confirm the number ordered.",
    "PROVIDER_MISSING": "The order does not name the ordering provider. Please state the "
    "ordering provider and their NPI.",
    "PROVIDER_NPI_INVALID": "The ordering provider's NPI on the order could not be "
    "confirmed. Please state the ordering provider's NPI.",
    "DUPLICATE_ORDER": "The same test appears to have been ordered twice for this patient "
    "on this date. Please confirm whether both orders are intended.",
    "SIGNATURE_MISSING": "Please confirm the order is authenticated by the ordering provider.",
}
_GENERIC = "Please clarify the order as documented in the patient's record."


@dataclass(frozen=True, slots=True)
class QueryDraft:
    question: str
    indicators: tuple[str, ...]
    choices: tuple[str, ...]


def compliance_problems(text: str, allowed_codes: Sequence[str] = ()) -> list[str]:
    """Why `text` would not be a compliant query (empty when it is)."""
    problems = [f"mentions '{m.group(0)}'" for m in _FORBIDDEN.finditer(text)]
    allowed = {c.replace(".", "").upper() for c in allowed_codes}
    for match in _ICD10_CODE.finditer(text):
        if match.group(0).replace(".", "").upper() not in allowed:
            problems.append(f"names a code not on the order: {match.group(0)}")
    return problems


def _test_line(test: OrderTest) -> str:
    name = test.sent_text or test.sent_code
    return f"Test ordered: {name} (as sent: {test.sent_code})"


def _diagnosis_line(dx: OrderDiagnosis) -> str:
    return f"Reason given on the order: {dx.code}" + (f" {dx.text}" if dx.text else "")


def compose_query(
    order: Order,
    findings: Sequence[Finding],
    diagnoses: Sequence[OrderDiagnosis],
    tests: Sequence[OrderTest],
) -> QueryDraft:
    """A query from the order's open findings; cites only what the order itself says.

    Lab-internal findings (`LAB_INTERNAL_FINDINGS`: code tables out of date) are never asked
    about."""
    indicators: list[str] = [_test_line(t) for t in tests]
    indicators += [_diagnosis_line(d) for d in diagnoses if d.source == "sender"]
    if not any(d.source == "sender" for d in diagnoses):
        indicators.append("No reason for the test is given on the order.")
    questions: list[str] = []
    for finding in findings:
        if finding.code in LAB_INTERNAL_FINDINGS:
            continue  # the lab's own problem (out-of-date code tables): not the office's
        question = _QUESTIONS.get(finding.code, _GENERIC)
        if question not in questions:
            questions.append(question)
    if not questions:
        questions.append(_GENERIC)
    question = "\n".join(questions)
    sent_codes = [d.code for d in diagnoses if d.source == "sender"]
    draft = QueryDraft(question, tuple(indicators), STANDARD_CHOICES)
    body = "\n".join([draft.question, *draft.indicators, *draft.choices])
    problems = compliance_problems(body, sent_codes)
    if problems:  # a sender's own text may carry forbidden words: cite codes only then
        cleaned = tuple(line for line in indicators if not compliance_problems(line, sent_codes))
        draft = QueryDraft(question, cleaned, STANDARD_CHOICES)
    return draft
