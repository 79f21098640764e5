"""Medical necessity (Medicare NCD/LCD lists) and the Medicare screening benefits.

These are Medicare rules: they run when the payer table says one of the order's insurances is
Medicare, Medicare Advantage (42 CFR 422.101) or Medicare as a secondary payer (or a payer
setting turns them on). A test under a policy is supported when at least one diagnosis sent
is covered by the policy (for an inverted policy such as 190.15: not on its negative lists)
and is not on the never-covered list. A test ordered as a screening is checked against its
screening benefit instead (`labintake.verification.screening`).

A test whose catalog entry names a policy the coverage tables do not hold cannot be checked:
its necessity is "unverified" (NECESSITY_UNVERIFIED, warn by default), never a pass. So is a
test under a policy whose lists are marked incomplete when no diagnosis sent is on them: the
policy neither supports nor rejects it.

When the documentation supports no covered reason, the path is an ABN (CMS-R-131) signed by
the patient before the test (modifier GA) or none (GZ); a screening outside its benefit is a
statutory exclusion (GY, GX). That advice is in the coder's message only
(`labintake.verification.modifiers`); the question for the office asks for documentation.
"""

from __future__ import annotations

from labintake.codes.catalog import CatalogEntry
from labintake.codes.policies import NcdPolicy
from labintake.statuses import FindingCode, Severity
from labintake.verification.context import RuleContext
from labintake.verification.facts import TestFacts
from labintake.verification.findings import (
    NECESSITY_FAIL,
    NECESSITY_NOT_APPLICABLE,
    NECESSITY_PASS,
    NECESSITY_UNVERIFIED,
)
from labintake.verification.matching import code_in
from labintake.verification.modifiers import ABN_MODIFIERS, advice
from labintake.verification.screening import (
    check_screening_codes,
    code_without_reason,
    eligibility_problem,
    outside_eligibility,
)


def abn_decided(test: TestFacts) -> str | None:
    """Any liability modifier the test carries (GA, GZ, GX or GY)."""
    return next((m for m in test.modifiers if m in ABN_MODIFIERS), None)


def check_necessity(ctx: RuleContext) -> None:
    for test in ctx.facts.tests:
        entry = ctx.resolved[test.seq - 1]
        if entry is None:
            ctx.necessity[test.seq] = NECESSITY_UNVERIFIED
            continue
        if not ctx.medicare:
            ctx.necessity[test.seq] = NECESSITY_NOT_APPLICABLE
            continue
        cpt = entry.cpt
        policies = ctx.policies.for_cpt(cpt) + ctx.policies.lcd_for_cpt(cpt)
        ctx.policies_applied[test.seq] = tuple(p.ncd for p in policies)
        codes = [d.code for d in ctx.diagnoses]
        if not codes:
            ctx.necessity[test.seq] = NECESSITY_UNVERIFIED
            continue
        missing = _missing_policies(ctx, entry, policies)
        if missing:
            shown = tuple(f"{name} (not loaded)" for name in missing)
            ctx.policies_applied[test.seq] = ctx.policies_applied[test.seq] + shown
            _policy_not_loaded(ctx, test, cpt, missing)
            ctx.necessity[test.seq] = NECESSITY_UNVERIFIED
            continue
        if check_screening_codes(ctx, test, cpt, codes, policies):
            ctx.necessity[test.seq] = NECESSITY_FAIL
            continue
        ctx.necessity[test.seq] = _screening_or_policies(ctx, test, cpt, codes, policies)


def _screening_or_policies(
    ctx: RuleContext, test: TestFacts, cpt: str, codes: list[str], policies: list[NcdPolicy]
) -> str:
    benefits = ctx.policies.screening_by_cpt(cpt)
    dedicated = next((b for b in benefits if b.dedicated), None)
    screening = next((b for b in benefits if any(b.dx.matches(c) for c in codes)), None)
    if dedicated is not None and screening is None:
        code_without_reason(ctx, test, cpt, dedicated)
        return NECESSITY_FAIL
    supported = {p.ncd for p in policies if any(_supports(ctx, p, c) for c in codes)}
    if screening is not None and (screening.dedicated or not supported):
        why = eligibility_problem(screening.eligibility, ctx.facts, codes)
        if why is not None:
            outside_eligibility(ctx, test, cpt, screening, why)
            return NECESSITY_FAIL
        ctx.screening_use[test.seq] = screening
        return NECESSITY_PASS
    if not policies:
        return NECESSITY_NOT_APPLICABLE
    outcome = NECESSITY_PASS
    never = ctx.policies.never_covered
    for policy in policies:
        if policy.ncd in supported:
            continue
        unknown = [] if policy.complete else [c for c in codes if _unknown(ctx, policy, c)]
        if unknown:
            _incomplete_list(ctx, test, cpt, policy, unknown)
            if outcome == NECESSITY_PASS:
                outcome = NECESSITY_UNVERIFIED
            continue
        outcome = NECESSITY_FAIL
        never_sent = [c for c in codes if code_in(never, c)]
        _not_supported(ctx, test, cpt, policy, never_sent)
    return outcome


def _missing_policies(
    ctx: RuleContext, entry: CatalogEntry, policies: list[NcdPolicy]
) -> list[str]:
    """The policies the catalog entry names (NCD, LCD) that no loaded policy answers to."""
    named = [(number, kind) for number, kind in ((entry.ncd, "NCD"), (entry.lcd, "LCD")) if number]
    return [
        f"{kind} {number}"
        for number, kind in named
        if not any(p.ncd == number for p in policies) and _loaded(ctx, number, kind) is None
    ]


def _loaded(ctx: RuleContext, number: str, kind: str) -> NcdPolicy | None:
    if kind == "NCD":
        return ctx.policies.ncd(number)
    return next((p for p in ctx.policies.lcds if p.ncd == number), None)


def _unknown(ctx: RuleContext, policy: NcdPolicy, code: str) -> bool:
    """On neither of the policy's lists nor the never-covered list: an incomplete policy
    cannot say whether this diagnosis supports the test."""
    return not (
        code_in(ctx.policies.never_covered, code)
        or code_in(policy.not_covered, code)
        or code_in(policy.covered, code)
    )


def _policy_not_loaded(ctx: RuleContext, test: TestFacts, cpt: str, missing: list[str]) -> None:
    name = ctx.test_name(test)
    named = " and ".join(missing)
    ctx.add(
        FindingCode.NECESSITY_UNVERIFIED,
        test.location,
        f"{name} ({cpt}) falls under {named} in the test catalog, but the coverage tables "
        f"in force ({ctx.policies.version}) hold no such policy: medical necessity was not "
        "checked. Load the policy (labintake codes import ncd) or check the diagnoses "
        f"({ctx.diagnosis_list()}) against it by hand.",
        "Please state the clinical reason for the test, as documented in the patient's record.",
        test_seq=test.seq,
        subject=f"{cpt}:{','.join(missing)}",
        reference={"policies": missing, "coverage_version": ctx.policies.version},
        severity=Severity.INFO if abn_decided(test) else None,
    )


def _incomplete_list(
    ctx: RuleContext, test: TestFacts, cpt: str, policy: NcdPolicy, unknown: list[str]
) -> None:
    name = ctx.test_name(test)
    ctx.add(
        FindingCode.NECESSITY_UNVERIFIED,
        test.location,
        f"The diagnosis lists of {policy.kind} {policy.ncd} ({policy.title}) in these tables "
        f"are incomplete and {_none_of(unknown)} on them, so whether "
        f"{'it supports' if len(unknown) == 1 else 'they support'} {name} ({cpt}) was not "
        "checked. Check against the current CMS list, or import the official list "
        "(labintake codes import ncd).",
        "Please state the clinical reason for the test, as documented in the patient's record.",
        test_seq=test.seq,
        subject=f"{cpt}:{policy.ncd}",
        reference={
            "policy": policy.ncd,
            "kind": policy.kind,
            "title": policy.title,
            "incomplete": True,
            "diagnoses": unknown,
        },
        severity=Severity.INFO if abn_decided(test) else None,
    )


def _none_of(codes: list[str]) -> str:
    return f"{codes[0]} is not" if len(codes) == 1 else f"none of {', '.join(codes)} is"


def _supports(ctx: RuleContext, policy: NcdPolicy, code: str) -> bool:
    """The policy's lists support this diagnosis and it is not on the never-covered list
    (the same test as `NcdPolicy.supports`, with remembered list lookups)."""
    if code_in(ctx.policies.never_covered, code) or code_in(policy.not_covered, code):
        return False
    return policy.inverted or code_in(policy.covered, code)


def _list_note(policy: NcdPolicy) -> str:
    """What the shipped lists of the policy are, for the finding's message."""
    if not policy.complete:
        return " (partial list shipped with labintake)"
    return " (illustrative list shipped with labintake)" if policy.illustrative else ""


def _not_supported(
    ctx: RuleContext,
    test: TestFacts,
    cpt: str,
    policy: NcdPolicy,
    never_covered: list[str],
) -> None:
    name = ctx.test_name(test)
    ncd, title, kind, illustrative = policy.ncd, policy.title, policy.kind, policy.illustrative
    sample = _list_note(policy)
    message = (
        f"None of the diagnoses sent ({ctx.diagnosis_list()}) supports {name} ({cpt}) under "
        f"{kind} {ncd} ({title}){sample}."
    )
    exclusion = bool(never_covered) and len(never_covered) == len(ctx.diagnoses)
    if never_covered:
        message += f" {', '.join(never_covered)} never supports a lab test under an NCD."
        if exclusion:
            message += " A test for a routine examination alone is excluded by statute."
    text, made = advice(test, exclusion=exclusion)
    if not made:
        message += " Query the office for the documented reason; do not pick a code for it."
    ctx.add(
        FindingCode.NECESSITY_NOT_SUPPORTED,
        test.location,
        message + text,
        f"Please ask the office for the reason {name} was ordered, as documented in the "
        f"patient's record; the order gives {ctx.diagnosis_list()}.",
        test_seq=test.seq,
        subject=f"{cpt}:{ncd}",
        reference={
            "policy": ncd,
            "kind": kind,
            "title": title,
            "illustrative": illustrative,
            "complete": policy.complete,
            "diagnoses": [d.code for d in ctx.diagnoses],
            "never_covered": never_covered,
            "exclusion": "statutory" if exclusion else "",
        },
        severity=Severity.INFO if made else None,
    )
