"""Medicare screening benefits: the screening code with its screening diagnosis, the patient's
eligibility, and a screening reason sent on a diagnostic code.

Run from `labintake.verification.necessity` for Medicare orders. The benefits are data
(`labintake.codes.screening`, `screening.toml`). Frequency limits are checked with the
patient's history in `labintake.verification.history`.

- A screening diagnosis on a diagnostic code (Z12.5 with 84153) is SCREENING_ON_DIAGNOSTIC: the
  screening is reported with its own code (G0103). A warning when another diagnosis sent
  supports the diagnostic test.
- A screening diagnosis on a test the benefit does not include (Z12.5 with free PSA 84154) is a
  screening outside the benefit: NECESSITY_NOT_SUPPORTED, statutory exclusion (GY).
- A dedicated screening code without its screening diagnosis (G0103 without Z12.5):
  NECESSITY_NOT_SUPPORTED; the office is asked whether the test is a screening at all.
- A screening for a patient outside the benefit's eligibility (sex, age, birth years, unless a
  risk diagnosis opens it): NECESSITY_NOT_SUPPORTED, statutory exclusion (GY).
"""

from __future__ import annotations

from datetime import date

from labintake.codes.policies import NcdPolicy
from labintake.codes.screening import Eligibility, ScreeningBenefit
from labintake.statuses import FindingCode, Severity
from labintake.verification.context import RuleContext
from labintake.verification.facts import OrderFacts, TestFacts
from labintake.verification.matching import code_in
from labintake.verification.modifiers import advice


def age_on(birth: date, day: date) -> int:
    """Completed years on `day` (a 29 February birthday counts from 1 March)."""
    return day.year - birth.year - ((day.month, day.day) < (birth.month, birth.day))


def eligibility_problem(rule: Eligibility, facts: OrderFacts, codes: list[str]) -> str | None:
    """Why the patient is outside the benefit, or None (also when the order does not say
    enough to tell: sex or birth date missing)."""
    sex = facts.patient_sex.strip().upper()[:1]
    if rule.sex and sex in ("M", "F") and sex != rule.sex:
        return f"the benefit covers {'men' if rule.sex == 'M' else 'women'} only"
    if rule.risk_dx and any(rule.risk_dx.matches(c) for c in codes):
        return None  # a documented risk opens the benefit whatever the age or birth year
    birth = facts.patient_birth_date
    if birth is None:
        return None
    dos = facts.date_of_service
    if rule.birth_years is not None:
        first, last = rule.birth_years
        if not first <= birth.year <= last:
            return f"without a documented risk it covers patients born {first}-{last} only"
    age = age_on(birth, dos)
    if rule.min_age is not None:
        day_after = rule.age_from == "day_after_birthday"
        if age < rule.min_age or (
            day_after and age == rule.min_age and _birthday_in(birth, rule.min_age) == dos
        ):
            start = "over" if day_after else "aged"
            return f"it covers patients {start} {rule.min_age}; the patient is {age} on {dos}"
    if rule.max_age is not None and age > rule.max_age:
        return (
            f"without a documented risk it covers patients up to {rule.max_age}; "
            f"the patient is {age}"
        )
    return None


def _birthday_in(birth: date, years: int) -> date:
    try:
        return birth.replace(year=birth.year + years)
    except ValueError:  # 29 February in a common year
        return date(birth.year + years, 3, 1)


def check_screening_codes(
    ctx: RuleContext, test: TestFacts, cpt: str, codes: list[str], policies: list[NcdPolicy]
) -> bool:
    """Screening diagnoses sent on diagnostic codes. True when the test fails for it (no other
    diagnosis supports it)."""
    failed = False
    for benefit in ctx.policies.screening_on_diagnostic(cpt):
        screening_dx = [c for c in codes if benefit.dx.matches(c)]
        if not screening_dx:
            continue
        other = [c for c in codes if c not in screening_dx]
        supported = any(_supports(ctx, p, c) for p in policies for c in other)
        replacement = benefit.diagnostic_cpts.get(cpt)
        if replacement is not None or supported:
            _on_diagnostic(ctx, test, cpt, benefit, replacement, screening_dx, supported)
        else:
            _not_in_benefit(ctx, test, cpt, benefit, screening_dx)
        failed = failed or not supported
    return failed


def _supports(ctx: RuleContext, policy: NcdPolicy, code: str) -> bool:
    if code_in(ctx.policies.never_covered, code) or code_in(policy.not_covered, code):
        return False
    return policy.inverted or code_in(policy.covered, code)


def _described(ctx: RuleContext, codes: list[str]) -> str:
    return ", ".join(f"{d.code} ({d.entry.description})" for d in ctx.diagnoses if d.code in codes)


def _on_diagnostic(
    ctx: RuleContext,
    test: TestFacts,
    cpt: str,
    benefit: ScreeningBenefit,
    replacement: str | None,
    screening_dx: list[str],
    supported_otherwise: bool,
) -> None:
    name = ctx.test_name(test)
    described = _described(ctx, screening_dx)
    if replacement is not None:
        message = (
            f"{described} is a screening reason, but {name} is ordered as the diagnostic test "
            f"{cpt}; a screening {name} is reported as {replacement} ({benefit.title})."
        )
    else:
        message = (
            f"{described} is a screening reason, but {name} ({cpt}) is not the test the "
            f"{benefit.title} benefit covers ({', '.join(benefit.screening_cpts)})."
        )
    if supported_otherwise:
        message += (
            " Another diagnosis sent supports the diagnostic test: check whether the screening "
            "reason belongs on this order."
        )
    ctx.add(
        FindingCode.SCREENING_ON_DIAGNOSTIC,
        test.location,
        message,
        f"The order for {name} gives {described}, a screening reason. Please clarify "
        "whether the test is ordered as a screening or because of documented signs, symptoms "
        "or a condition, and provide the reason as documented in the patient's record.",
        test_seq=test.seq,
        subject=f"{cpt}:{','.join(screening_dx)}",
        reference={
            "screening_code": replacement,
            "benefit": benefit.name,
            "diagnoses": screening_dx,
            "source": benefit.source,
        },
        severity=Severity.WARN if supported_otherwise else None,
    )


def _not_in_benefit(
    ctx: RuleContext,
    test: TestFacts,
    cpt: str,
    benefit: ScreeningBenefit,
    screening_dx: list[str],
) -> None:
    name = ctx.test_name(test)
    described = _described(ctx, screening_dx)
    text, made = advice(test, exclusion=True)
    ctx.add(
        FindingCode.NECESSITY_NOT_SUPPORTED,
        test.location,
        f"{described} is a screening reason, but {name} ({cpt}) is not a screening test "
        f"Medicare covers: the {benefit.title} benefit covers only "
        f"{', '.join(benefit.screening_cpts)} ({benefit.source})." + text,
        f"The order for {name} gives {described}, a screening reason. Please clarify "
        "whether the test is ordered as a screening or because of documented signs, symptoms "
        "or a condition, and provide the reason as documented in the patient's record.",
        test_seq=test.seq,
        subject=f"{cpt}:{benefit.name}",
        reference={
            "benefit": benefit.name,
            "exclusion": "statutory",
            "diagnoses": screening_dx,
            "source": benefit.source,
        },
        severity=Severity.INFO if made else None,
    )


def code_without_reason(
    ctx: RuleContext, test: TestFacts, cpt: str, benefit: ScreeningBenefit
) -> None:
    """A dedicated screening code (G0103) sent without its screening diagnosis."""
    name = ctx.test_name(test)
    diagnostic = sorted(k for k, v in benefit.diagnostic_cpts.items() if v == cpt)
    message = (
        f"{cpt} is the {benefit.title} code and is reported with the screening diagnosis "
        f"{', '.join(benefit.dx.patterns)}; the order gives {ctx.diagnosis_list()}."
    )
    if diagnostic:
        message += (
            " A test for a documented sign, symptom or condition is reported as "
            f"{', '.join(diagnostic)}."
        )
    ctx.add(
        FindingCode.NECESSITY_NOT_SUPPORTED,
        test.location,
        message + " Query the office; do not pick a code for it.",
        f"The order for {name} gives {ctx.diagnosis_list()}. Please clarify whether the test "
        "is ordered as a screening or because of documented signs, symptoms or a condition, "
        "and provide the reason as documented in the patient's record.",
        test_seq=test.seq,
        subject=f"{cpt}:{benefit.name}:dx",
        reference={
            "benefit": benefit.name,
            "screening_dx": list(benefit.dx.patterns),
            "diagnostic_codes": diagnostic,
            "source": benefit.source,
        },
    )


def outside_eligibility(
    ctx: RuleContext, test: TestFacts, cpt: str, benefit: ScreeningBenefit, why: str
) -> None:
    name = ctx.test_name(test)
    text, made = advice(test, exclusion=True)
    ctx.add(
        FindingCode.NECESSITY_NOT_SUPPORTED,
        test.location,
        f"{name} ({cpt}) is ordered as a screening, but the patient is outside the "
        f"{benefit.title} benefit: {why} ({benefit.source})." + text,
        f"The order for {name} gives {ctx.diagnosis_list()}. Please confirm the patient's "
        "sex and date of birth and whether the test is ordered as a screening or because of "
        "documented signs, symptoms, risk factors or a condition, as documented in the "
        "patient's record.",
        test_seq=test.seq,
        subject=f"{cpt}:{benefit.name}:eligibility",
        reference={
            "benefit": benefit.name,
            "exclusion": "statutory",
            "reason": why,
            "source": benefit.source,
        },
        severity=Severity.INFO if made else None,
    )
