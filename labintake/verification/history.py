"""Rules against the patient's history: duplicate orders and frequency limits.

History is the list of tests already ordered for the same patient (the Medicare beneficiary
identifier when the orders carry one, else the same sending facility and MRN), passed in by
the caller; cancelled and rejected orders are not part of it. A duplicate is the same catalog
test (or the same CPT) for the same date of service, in another order or twice in this one.

Frequency limits are Medicare rules and count only tests that went to the lab (`performed`):
- a test ordered as a screening meets its screening benefit's limit (statutory, a hold),
  counted in calendar months as CMS counts them (`labintake.verification.months`) over the
  earlier screenings of the benefit: its dedicated codes, or a shared code (lipids, glucose)
  only when that order gave the screening diagnosis;
- any other test meets its NCD/LCD frequency guidance (a warning unless the limit is marked
  statutory), over the test family the limit counts, and not when a diagnosis sent is one for
  which the policy allows more frequent testing (`exempt_dx`).
"""

from __future__ import annotations

from datetime import date, timedelta

from labintake.codes.policies import FrequencyLimit
from labintake.codes.screening import ScreeningBenefit, ScreeningFrequency
from labintake.statuses import FindingCode, Severity
from labintake.verification.context import RuleContext
from labintake.verification.facts import Priors, PriorTest, TestFacts
from labintake.verification.matching import code_in
from labintake.verification.modifiers import advice
from labintake.verification.months import full_months_after, months_before
from labintake.verification.screening import age_on

REPEAT_MODIFIERS = frozenset({"91", "76", "77"})


def check_history(ctx: RuleContext) -> None:
    priors = ctx.priors
    dos = ctx.facts.date_of_service
    in_order: dict[str, TestFacts] = {}
    for test in ctx.facts.tests:
        entry = ctx.resolved[test.seq - 1]
        if entry is None:
            continue
        earlier = in_order.get(entry.code)
        if earlier is not None:
            if REPEAT_MODIFIERS.isdisjoint(test.modifiers):
                ctx.duplicate_lines.add(test.seq)
            _duplicate(ctx, test, entry.cpt, f"{earlier.location} of this order", None)
        else:
            in_order[entry.code] = test
            same = priors.same_day(dos, entry.code, entry.cpt)
            if same is not None:
                if same.same_message and REPEAT_MODIFIERS.isdisjoint(test.modifiers):
                    ctx.duplicate_lines.add(test.seq)  # counted once for units
                _duplicate(ctx, test, entry.cpt, f"order {same.order_ref}", same)
        if not ctx.medicare:
            continue
        benefit = ctx.screening_use.get(test.seq)
        if benefit is not None:
            _screening_frequency(ctx, test, entry.cpt, benefit, priors)
            continue
        for limit in _limits_for(ctx, entry.cpt):
            _frequency(ctx, test, entry.cpt, limit, priors, dos)


def _limits_for(ctx: RuleContext, cpt: str) -> list[FrequencyLimit]:
    limits: list[FrequencyLimit] = []
    for policy in ctx.policies.for_cpt(cpt) + ctx.policies.lcd_for_cpt(cpt):
        limits.extend(f for f in policy.frequency if cpt in f.cpts)
    return list(dict.fromkeys(limits))


def _screening_frequency(
    ctx: RuleContext,
    test: TestFacts,
    cpt: str,
    benefit: ScreeningBenefit,
    priors: Priors,
) -> None:
    codes = [d.code for d in ctx.diagnoses]
    limit = benefit.frequency_for(codes)
    if limit is None:
        return
    dos = ctx.facts.date_of_service
    dates: set[date] = set()
    for code in benefit.screening_cpts:
        for prior in priors.performed(code):
            if prior.date_of_service >= dos:
                continue  # same day: a duplicate, not a repeat
            if not benefit.dedicated and not any(benefit.dx.matches(c) for c in prior.diagnoses):
                continue  # the shared code was a diagnostic test then
            if _in_window(limit, prior.date_of_service, dos):
                dates.add(prior.date_of_service)
    if len(dates) < limit.max_count:
        return
    shown = ", ".join(f"{d:%Y-%m-%d}" for d in sorted(dates))
    name = ctx.test_name(test)
    text, made = advice(test, exclusion=False)
    severity = Severity.INFO if made else (None if limit.hard else Severity.WARN)
    ctx.add(
        FindingCode.NECESSITY_FREQUENCY,
        test.location,
        f"{name} ({cpt}) is ordered as a screening ({benefit.title}) and the patient already "
        f"had one on {shown}; the benefit allows {_rule(limit)} ({benefit.source}).{text}",
        f"The patient already had {name} on {shown}. Please ask the office for the reason for "
        f"repeating it on {dos:%Y-%m-%d}, as documented in the patient's record.",
        test_seq=test.seq,
        subject=f"{cpt}:{benefit.name}:{limit.max_count}",
        reference={
            "prior_dates": [d.isoformat() for d in sorted(dates)],
            "max_count": limit.max_count,
            "benefit": benefit.name,
            "limit": limit.description,
            "statutory": limit.hard,
            "source": benefit.source,
        },
        severity=severity,
    )


def _in_window(limit: ScreeningFrequency, prior: date, dos: date) -> bool:
    """Whether an earlier screening still counts against `limit` on `dos`."""
    if limit.lifetime:
        return True
    if limit.full_months is not None:
        return full_months_after(prior, dos) < limit.full_months
    assert limit.rolling_months is not None
    return prior >= months_before(dos, limit.rolling_months)


def _rule(limit: ScreeningFrequency) -> str:
    if limit.lifetime:
        return f"{limit.max_count} in a lifetime"
    if limit.full_months is not None:
        return (
            f"the next one once {limit.full_months} full months have passed following the "
            "month of the last"
        )
    return f"{limit.max_count} within {limit.rolling_months} months"


def _frequency(
    ctx: RuleContext,
    test: TestFacts,
    cpt: str,
    limit: FrequencyLimit,
    priors: Priors,
    dos: date,
) -> None:
    if not any(priors.performed(c) for c in limit.counted):
        return  # nothing earlier to count
    codes = [d.code for d in ctx.diagnoses]
    when = limit.when_dx
    if when is not None and not any(code_in(when, c) for c in codes):
        return
    exempt = limit.exempt_dx
    if exempt is not None and any(code_in(exempt, c) for c in codes):
        return  # the policy allows more frequent testing for this condition
    facts = ctx.facts
    if limit.sex and facts.patient_sex and facts.patient_sex.upper()[:1] != limit.sex.upper()[:1]:
        return
    if (
        limit.min_age is not None
        and facts.patient_birth_date is not None
        and age_on(facts.patient_birth_date, dos) < limit.min_age
    ):
        return
    if limit.period_months is not None:
        start = months_before(dos, limit.period_months)
        period = f"{limit.period_months} months"
    else:
        start = dos - timedelta(days=limit.period_days - 1)
        period = f"{limit.period_days} days"
    dates: set[date] = set()
    for limit_cpt in limit.counted:
        for prior in priors.performed(limit_cpt):
            if not start <= prior.date_of_service < dos:
                continue
            if when is not None and not any(code_in(when, c) for c in prior.diagnoses):
                continue
            dates.add(prior.date_of_service)
    if len(dates) + 1 <= limit.max_count:
        return
    name = ctx.test_name(test)
    shown = ", ".join(f"{d:%Y-%m-%d}" for d in sorted(dates))
    figure = " (figure to be confirmed against the NCD text)" if limit.verify else ""
    kind = "a statutory limit" if limit.statutory else "policy guidance for a stable patient"
    text, made = advice(test, exclusion=False)
    message = (
        f"{name} ({cpt}) was already done for this patient on {shown}; the limit is "
        f"{limit.max_count} in {period}, {kind}: {limit.description}{figure}."
    )
    if not limit.statutory and not made:
        message += (
            " More frequent testing is reasonable when the record documents why (a change of "
            "condition or therapy)."
        )
    severity = Severity.INFO if made else (None if limit.statutory else Severity.WARN)
    ctx.add(
        FindingCode.NECESSITY_FREQUENCY,
        test.location,
        message + text,
        f"The patient already had {name} on {shown}. Please ask the office for the reason for "
        f"repeating it on {dos:%Y-%m-%d}, as documented in the patient's record.",
        test_seq=test.seq,
        subject=f"{cpt}:{limit.max_count}/{period.replace(' ', '')}",
        reference={
            "prior_dates": [d.isoformat() for d in sorted(dates)],
            "max_count": limit.max_count,
            "period_days": limit.period_days,
            "period_months": limit.period_months,
            "limit": limit.description,
            "statutory": limit.statutory,
        },
        severity=severity,
    )


def _duplicate(
    ctx: RuleContext, test: TestFacts, cpt: str, where: str, prior: PriorTest | None
) -> None:
    name = ctx.test_name(test)
    dos = ctx.facts.date_of_service
    repeat = next((m for m in test.modifiers if m in REPEAT_MODIFIERS), None)
    message = f"{name} ({cpt}) is already ordered for this patient for {dos:%Y-%m-%d} ({where})."
    severity = None
    if repeat:
        message += f" The test carries modifier {repeat} (repeat test on the same day)."
        severity = Severity.INFO
    ctx.add(
        FindingCode.DUPLICATE_ORDER,
        test.location,
        message,
        f"{name} is already ordered for this patient for {dos:%Y-%m-%d} ({where}). Please "
        "confirm whether another test on the same day is intended, and if so why.",
        test_seq=test.seq,
        subject=cpt,
        reference={"duplicate_of": where, "order": prior.order_ref if prior else None},
        severity=severity,
    )
