"""Compliant queries to the ordering provider (AHIMA/ACDIS practice).

A query asks for the reason for the test or for documentation; it lists the tests ordered,
cites the indicators found in the order as received, asks one question per finding, never
proposes a code and never mentions payment. Each question names what it is about (the test
as the order names it and the diagnosis the order sent, or the ordering provider) and offers
the answers that fit it (`labintake.queue.query_questions`): an open line, "other", and
"clinically undetermined" where the question is clinical. The text is checked by
`compliance_problems`; what the sender wrote is cleaned by `clean_line`, which removes the
offending words or codes and keeps the rest of the line. The codes of the order's own tests
are never taken for diagnosis codes (G0103 is HCPCS).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from labintake.models.orders import Finding, Order, OrderDiagnosis, OrderTest
from labintake.models.queue import OfficeQuery
from labintake.queue.query_questions import (
    ABOUT_PROVIDER,
    ABOUT_TESTS_ONLY,
    GENERIC,
    OTHER,
    UNDETERMINED,
    asked_for,
)
from labintake.statuses import LAB_INTERNAL_FINDINGS

__all__ = [
    "OTHER",
    "UNDETERMINED",
    "QueryDraft",
    "QueryQuestion",
    "compose_query",
    "finding_key",
    "stored_questions",
]

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
# An ICD-10-CM code: a letter, a digit, then a digit or the letter of the few categories that
# have one (C4A, C7A, C7B, D3A, M1A, O9A, Z3A), so that a test named "HEMOGLOBIN A1C" is not
# taken for a code.
_ICD10_CODE = re.compile(
    r"\b[A-TV-Z][0-9](?:[0-9]|(?<=C4|C7|D3|M1|O9|Z3)A|(?<=C7)B)(?:\.?[0-9A-Z]{1,4})?\b"
)

# Findings that are the coder's own task: never turned into a question for the office.
CODER_ONLY = frozenset({"TEST_MEDICARE_PARTS"})
# At most this many tests are named in one question; the rest are counted.
MAX_TESTS_NAMED = 4


@dataclass(frozen=True, slots=True)
class QueryQuestion:
    """One question of a query: the finding it comes from, what it is about (the test and
    the diagnosis as the order sent them), what it asks, and the answers that fit it."""

    finding: str
    about: str
    text: str
    choices: tuple[str, ...]

    def as_json(self) -> dict[str, Any]:
        return {
            "finding": self.finding,
            "about": self.about,
            "text": self.text,
            "choices": list(self.choices),
        }


@dataclass(frozen=True, slots=True)
class QueryDraft:
    """A query before it is stored: the tests ordered, what the order shows, the questions,
    and the keys of the findings asked about (an open query with the same keys is the same
    query)."""

    tests: tuple[str, ...]
    indicators: tuple[str, ...]
    questions: tuple[QueryQuestion, ...]
    finding_keys: tuple[str, ...]

    @property
    def question(self) -> str:
        """The questions as one text, one line each (the stored `question`)."""
        return "\n".join(f"{q.about} {q.text}" for q in self.questions)

    @property
    def choices(self) -> tuple[str, ...]:
        """Every answer offered, once each, in the order the questions offer them."""
        return tuple(dict.fromkeys(c for q in self.questions for c in q.choices))


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
    return f"{_test_name(test)} (as sent: {test.sent_code})"


def _diagnosis_line(dx: OrderDiagnosis) -> str:
    return f"Reason given on the order: {dx.code}" + (f" {dx.text}" if dx.text else "")


def _test_codes(tests: Sequence[OrderTest]) -> list[str]:
    codes: list[str] = []
    for test in tests:
        codes += [c for c in (test.sent_code, test.sent_alt_code, test.cpt, test.local_code) if c]
    return codes


def finding_key(finding: Finding) -> str:
    """What identifies a finding across verifications: its code, place and subject."""
    subject = str((finding.reference or {}).get("subject", ""))
    return f"{finding.code}|{finding.location}|{subject}"


def _named_tests(tests: Sequence[OrderTest]) -> str:
    shown = [_test_line(t) for t in tests[:MAX_TESTS_NAMED]]
    if len(tests) > MAX_TESTS_NAMED:
        shown.append(f"{len(tests) - MAX_TESTS_NAMED} more")
    label = "the test" if len(tests) == 1 else "the tests"
    joined = shown[0] if len(shown) == 1 else ", ".join(shown[:-1]) + " and " + shown[-1]
    return f"{label} {joined}"


def _provider(order: Order) -> str:
    name = " ".join(p for p in (order.provider_given_name, order.provider_family_name) if p)
    sent = ", ".join(
        p for p in (name, f"NPI {order.provider_npi}" if order.provider_npi else "") if p
    )
    return (
        f"About the ordering provider as sent ({sent}):" if sent else "About the ordering provider:"
    )


def _about(
    order: Order,
    finding: Finding,
    tests: Sequence[OrderTest],
    diagnoses: Sequence[OrderDiagnosis],
) -> str:
    """What a question is about: the test(s) and the diagnosis (as the order sent them). A
    finding on one test names that test; a finding on a diagnosis names it with the order's
    tests; a question about the provider names the provider."""
    if finding.code in ABOUT_PROVIDER:
        return _provider(order)
    sent = {_bare(d.code): d for d in diagnoses}
    subject = str((finding.reference or {}).get("subject", ""))
    named = [sent[_bare(c)] for c in subject.split("|") if _bare(c) in sent]
    test = next((t for t in tests if finding.test_seq and t.seq == finding.test_seq), None)
    concerned = [test] if test is not None else list(tests)
    if test is not None and not named:
        named = list(diagnoses)
    if finding.code in ABOUT_TESTS_ONLY:
        named = []
    parts: list[str] = []
    if concerned:
        parts.append(_named_tests(concerned))
    reasons = [d.code + (f" {d.text}" if d.text else "") for d in named]
    if reasons:
        label = "the reason" if len(reasons) == 1 else "the reasons"
        parts.append(f"{label} given as {'; '.join(reasons)}")
    if not parts:
        return "About the order as a whole:"
    return "About " + ", with ".join(parts) + ":"


def compose_query(
    order: Order,
    findings: Sequence[Finding],
    diagnoses: Sequence[OrderDiagnosis],
    tests: Sequence[OrderTest],
) -> QueryDraft:
    """A query from the order's open findings; cites only what the order itself says, one
    question per finding naming the test and the diagnosis it is about, with the answers
    that fit that question. Lab-internal findings (`LAB_INTERNAL_FINDINGS`: code tables out
    of date) and the coder's own tasks are never asked about."""
    sender_dx = [d for d in diagnoses if d.source == "sender"]
    allowed = [d.code for d in sender_dx] + _test_codes(tests)
    indicators = [_diagnosis_line(d) for d in sender_dx]
    if not sender_dx:
        indicators.append("No reason for the test is given on the order.")
    questions: list[QueryQuestion] = []
    keys: list[str] = []
    for finding in sorted(findings, key=lambda f: f.id or 0):  # as the rules raised them
        if finding.code in LAB_INTERNAL_FINDINGS or finding.code in CODER_ONLY:
            continue  # the lab's own matter (tables out of date, coder tasks): not the office's
        keys.append(finding_key(finding))
        asked = asked_for(finding.code)
        # the sender's own text may carry forbidden words or codes: remove them, keep the line
        about = clean_line(_about(order, finding, tests, sender_dx), allowed)
        question = QueryQuestion(finding.code, about, asked.text, asked.choices)
        if all((q.about, q.text) != (about, asked.text) for q in questions):
            questions.append(question)
    if not questions:
        questions.append(
            QueryQuestion("", "About the order as a whole:", GENERIC.text, GENERIC.choices)
        )
    tested = tuple(c for c in (clean_line(_test_line(t), allowed) for t in tests) if c)
    cleaned = tuple(c for c in (clean_line(line, allowed) for line in indicators) if c)
    return QueryDraft(tested, cleaned, tuple(questions), tuple(sorted(set(keys))))


def stored_questions(query: OfficeQuery) -> list[QueryQuestion]:
    """The questions of a stored query. A query written before questions were stored one by
    one has its lines as questions, with the choices it offered after the last."""
    if query.questions:
        return [
            QueryQuestion(
                str(q.get("finding", "")),
                str(q.get("about", "")),
                str(q.get("text", "")),
                tuple(str(c) for c in q.get("choices", [])),
            )
            for q in query.questions
        ]
    lines = [line for line in query.question.split("\n") if line.strip()] or [query.question]
    asked = [QueryQuestion("", "", line, ()) for line in lines]
    asked[-1] = QueryQuestion("", "", lines[-1], tuple(query.choices))
    return asked
