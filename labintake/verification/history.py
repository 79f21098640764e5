"""Rules against the patient's history: duplicate orders and frequency limits.

History is the list of tests already ordered for the same patient (same sending facility and
MRN), passed in by the caller; cancelled and rejected orders are not part of it. A duplicate is
the same catalog test (or the same CPT) for the same date of service, in another order or twice
in this one. Frequency limits come from the coverage policies (Medicare only) and count the
distinct earlier dates of service inside the limit's window.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import date

from labintake.codes.policies import FrequencyLimit
from labintake.statuses import FindingCode, Severity
from labintake.verification.context import RuleContext
from labintake.verification.facts import PriorTest, TestFacts
from labintake.verification.matching import code_in
from labintake.verification.necessity import ABN_PATH, abn_decided

REPEAT_MODIFIERS = frozenset({"91", "76", "77"})


def check_history(ctx: RuleContext) -> None:
    facts = ctx.facts
    dos = facts.date_of_service
    by_cpt: dict[str, list[PriorTest]] = defaultdict(list)
    same_day: dict[str, PriorTest] = {}
    for prior in ctx.history.tests:
        if prior.cpt:
            by_cpt[prior.cpt].append(prior)
        if prior.date_of_service == dos:
            if prior.local_code:
                same_day.setdefault(f"L:{prior.local_code}", prior)
            if prior.cpt:
                same_day.setdefault(f"C:{prior.cpt}", prior)
    in_order: dict[str, TestFacts] = {}
    for test in facts.tests:
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
            same = same_day.get(f"L:{entry.code}") or same_day.get(f"C:{entry.cpt}")
            if same is not None:
                if same.same_message and REPEAT_MODIFIERS.isdisjoint(test.modifiers):
                    ctx.duplicate_lines.add(test.seq)  # counted once for units
                _duplicate(ctx, test, entry.cpt, f"order {same.order_ref}", same)
        if ctx.medicare:
            for limit in _limits_for(ctx, test.seq, entry.cpt):
                _frequency(ctx, test, entry.cpt, limit, by_cpt, dos)


def _limits_for(ctx: RuleContext, seq: int, cpt: str) -> list[FrequencyLimit]:
    """The policy limits, or only the screening limits for a test done as a screening."""
    limits: list[FrequencyLimit] = []
    if seq not in ctx.screening_use:
        for policy in ctx.policies.for_cpt(cpt) + ctx.policies.lcd_for_cpt(cpt):
            limits.extend(f for f in policy.frequency if cpt in f.cpts)
    for rule in ctx.policies.screening_rules:
        if rule.frequency is not None and cpt in rule.frequency.cpts:
            limits.append(rule.frequency)
    return list(dict.fromkeys(limits))


def _age_on(birth: date, day: date) -> int:
    return day.year - birth.year - ((day.month, day.day) < (birth.month, birth.day))


def _frequency(
    ctx: RuleContext,
    test: TestFacts,
    cpt: str,
    limit: FrequencyLimit,
    by_cpt: dict[str, list[PriorTest]],
    dos: date,
) -> None:
    codes = [d.code for d in ctx.diagnoses]
    when = limit.when_dx
    if when is not None and not any(code_in(when, c) for c in codes):
        return
    facts = ctx.facts
    if limit.sex and facts.patient_sex and facts.patient_sex.upper()[:1] != limit.sex.upper()[:1]:
        return
    if (
        limit.min_age is not None
        and facts.patient_birth_date is not None
        and _age_on(facts.patient_birth_date, dos) < limit.min_age
    ):
        return
    dates: set[date] = set()
    for limit_cpt in limit.cpts:
        for prior in by_cpt.get(limit_cpt, ()):
            days = (dos - prior.date_of_service).days
            if not 0 < days < limit.period_days:
                continue
            if when is not None and not any(code_in(when, c) for c in prior.diagnoses):
                continue
            dates.add(prior.date_of_service)
    if len(dates) + 1 <= limit.max_count:
        return
    name = ctx.test_name(test)
    shown = ", ".join(f"{d:%Y-%m-%d}" for d in sorted(dates))
    figure = " (figure to be confirmed against the NCD text)" if limit.verify else ""
    message = (
        f"{name} ({cpt}) was already done for this patient on {shown}; the limit is "
        f"{limit.max_count} in {limit.period_days} days: {limit.description}{figure}."
    )
    decided = abn_decided(test)
    severity = None
    if decided:
        message += f" The test already carries modifier {decided}: the ABN decision is made."
        severity = Severity.INFO
    ctx.add(
        FindingCode.NECESSITY_FREQUENCY,
        test.location,
        message,
        f"The patient already had {name} on {shown}. Please ask the office for the reason for "
        f"repeating it on {dos:%Y-%m-%d}, as documented in the patient's record." + ABN_PATH,
        test_seq=test.seq,
        subject=f"{cpt}:{limit.max_count}/{limit.period_days}",
        reference={
            "prior_dates": [d.isoformat() for d in sorted(dates)],
            "max_count": limit.max_count,
            "period_days": limit.period_days,
            "limit": limit.description,
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
