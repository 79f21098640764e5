"""Compliant queries to the ordering provider (AHIMA/ACDIS practice).

A query asks for the reason for the test or for documentation; it cites the indicators found
in the order as received, offers an open answer or clinically neutral choices including
"other" and "clinically undetermined", never proposes a code and never mentions payment.
Each question names what it is about: the test (as the order names it) and the diagnosis the
order sent. The text is checked by `compliance_problems`; what the sender wrote is cleaned by
`clean_line`, which removes the offending words or codes and keeps the rest of the line. The
codes of the order's own tests are never taken for diagnosis codes (G0103 is HCPCS).
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
    "DX_SEX_CONFLICT": "A reason on the order does not match the patient's sex as registered. "
    "Please confirm the patient's information and the reason for the test as documented in "
    "the patient's record.",
    "DX_AGE_CONFLICT": "A reason on the order does not fit the patient's age from the date of "
    "birth on the order. Please confirm the patient's date of birth and the reason for the "
    "test as documented in the patient's record.",
    "DX_EXTERNAL_CAUSE_ONLY": "The order states how an injury or condition came about, but "
    "not the condition itself. Please state the reason for the test (the injury, condition, "
    "sign or symptom) as documented in the patient's record.",
    "DX_MANIFESTATION_ALONE": "The order gives a condition that arises from another disease "
    "but does not state that underlying disease. Please state the underlying condition as "
    "documented in the patient's record.",
    "DX_UNSPECIFIED_WITH_SPECIFIC": "The order describes a condition both in general terms and "
    "more specifically. Please clarify the condition(s) the record documents.",
}
_GENERIC = "Please clarify the order as documented in the patient's record."
# Findings that are the coder's own task: never turned into a question for the office.
CODER_ONLY = frozenset({"TEST_MEDICARE_PARTS"})


@dataclass(frozen=True, slots=True)
class QueryDraft:
    question: str
    indicators: tuple[str, ...]
    choices: tuple[str, ...]


def _bare(code: str) -> str:
    return code.replace(".", "").strip().upper()


def compliance_problems(text: str, allowed_codes: Sequence[str] = ()) -> list[str]:
    """Why `text` would not be a compliant query (empty when it is). `allowed_codes` are the
    order's own codes (its diagnoses and its tests' codes), which may be cited."""
    problems = [f"mentions '{m.group(0)}'" for m in _FORBIDDEN.finditer(text)]
    allowed = {_bare(c) for c in allowed_codes}
    for match in _ICD10_CODE.finditer(text):
        if _bare(match.group(0)) not in allowed:
            problems.append(f"names a code not on the order: {match.group(0)}")
    return problems


def clean_line(text: str, allowed_codes: Sequence[str] = ()) -> str:
    """`text` with the words a query must not contain, and codes not on the order, removed;
    the rest of the line is kept."""
    allowed = {_bare(c) for c in allowed_codes}
    cleaned = _FORBIDDEN.sub("", text)
    cleaned = _ICD10_CODE.sub(lambda m: m.group(0) if _bare(m.group(0)) in allowed else "", cleaned)
    cleaned = re.sub(r"\(\s*\)", "", cleaned)
    cleaned = re.sub(r"\s+([,.;:)])", r"\1", re.sub(r"\s{2,}", " ", cleaned))
    return cleaned.strip()


def _test_name(test: OrderTest) -> str:
    return test.sent_text or test.sent_code


def _test_line(test: OrderTest) -> str:
    return f"Test ordered: {_test_name(test)} (as sent: {test.sent_code})"


def _diagnosis_line(dx: OrderDiagnosis) -> str:
    return f"Reason given on the order: {dx.code}" + (f" {dx.text}" if dx.text else "")


def _test_codes(tests: Sequence[OrderTest]) -> list[str]:
    codes: list[str] = []
    for test in tests:
        codes += [c for c in (test.sent_code, test.sent_alt_code, test.cpt, test.local_code) if c]
    return codes


def _about(
    finding: Finding, tests: Sequence[OrderTest], diagnoses: Sequence[OrderDiagnosis]
) -> str:
    """What a question is about: the test and the diagnosis (as the order sent them)."""
    sent = {_bare(d.code): d for d in diagnoses}
    subject = str((finding.reference or {}).get("subject", ""))
    named = [sent[_bare(c)] for c in subject.split("|") if _bare(c) in sent]
    test = next((t for t in tests if finding.test_seq and t.seq == finding.test_seq), None)
    parts: list[str] = []
    if test is not None:
        parts.append(f"the test {_test_name(test)} (as sent: {test.sent_code})")
        if not named:
            named = list(diagnoses)
    reasons = [d.code + (f" {d.text}" if d.text else "") for d in named]
    if reasons:
        label = "the reason" if len(reasons) == 1 else "the reasons"
        parts.append(f"{label} given as {'; '.join(reasons)}")
    if not parts:
        return "About the order as a whole: "
    return "About " + ", with ".join(parts) + ": "


def compose_query(
    order: Order,
    findings: Sequence[Finding],
    diagnoses: Sequence[OrderDiagnosis],
    tests: Sequence[OrderTest],
) -> QueryDraft:
    """A query from the order's open findings; cites only what the order itself says, one
    question per finding naming the test and the diagnosis it is about. Lab-internal findings
    (`LAB_INTERNAL_FINDINGS`: code tables out of date) are never asked about."""
    sender_dx = [d for d in diagnoses if d.source == "sender"]
    allowed = [d.code for d in sender_dx] + _test_codes(tests)
    indicators: list[str] = [_test_line(t) for t in tests]
    indicators += [_diagnosis_line(d) for d in sender_dx]
    if not sender_dx:
        indicators.append("No reason for the test is given on the order.")
    questions: list[str] = []
    for finding in findings:
        if finding.code in LAB_INTERNAL_FINDINGS or finding.code in CODER_ONLY:
            continue  # the lab's own matter (tables out of date, coder tasks): not the office's
        question = _about(finding, tests, sender_dx) + _QUESTIONS.get(finding.code, _GENERIC)
        if question not in questions:
            questions.append(question)
    if not questions:
        questions.append(_GENERIC)
    # the sender's own text may carry forbidden words or codes: remove them, keep the line
    cleaned = tuple(c for c in (clean_line(line, allowed) for line in indicators) if c)
    question = "\n".join(clean_line(q, allowed) for q in questions)
    return QueryDraft(question, cleaned, STANDARD_CHOICES)
