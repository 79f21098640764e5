"""The verification engine: order facts + code tables + history + rule settings -> findings.

Pure: values in, values out. The rules run in a fixed order (tests, diagnoses, provider,
necessity, history, bundling); later rules use what earlier ones found (the valid diagnoses,
the catalog entry of each test). The order groups of one message are one requisition and are
verified together (`verify_message`); `verify` is the one-order case. An order with no hold
finding is verified; any hold not overridden by a coder makes it held: this verdict is the
only one (`labintake.lifecycle.after_verification` says where it takes the stored order).
Every result records the code-table versions and the rules version that produced it.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from typing import TYPE_CHECKING

from labintake.codes.release_choice import ReleaseChoice, out_of_date_text
from labintake.codes.tables import NO_VERSION
from labintake.statuses import FindingCode, OrderStatus, Severity
from labintake.verification.bundling_rules import check_bundling, check_message_bundling
from labintake.verification.context import RuleContext
from labintake.verification.diagnoses import check_diagnoses
from labintake.verification.facts import (
    NO_HISTORY,
    OrderFacts,
    PatientHistory,
    PriorIndex,
    Priors,
    PriorTest,
)
from labintake.verification.findings import ResolvedTest, VerificationResult
from labintake.verification.history import check_history
from labintake.verification.necessity import check_necessity
from labintake.verification.providers import check_provider
from labintake.verification.resolution import resolve_tests
from labintake.verification.rule_settings import DEFAULT_RULES, RuleSettings

if TYPE_CHECKING:
    from labintake.codes.bundling import Bundling
    from labintake.codes.icd10 import Icd10Release
    from labintake.codes.policies import CoveragePolicies
    from labintake.codes.tables import CodeTables

# Bump when a rule's logic or wording changes; recorded with every verification.
RULES_VERSION = "2026.12.1"

_SEVERITY_ORDER = {Severity.HOLD: 0, Severity.WARN: 1, Severity.INFO: 2}


def icd10_release_for(tables: CodeTables, dos: date) -> Icd10Release | None:
    """The ICD-10-CM release that checks an order dated `dos`: the one in force; when no loaded
    release covers the date, the newest one (and `verify` raises CODE_TABLES_OUT_OF_DATE)."""
    return tables.icd10_choice(dos).release


def _out_of_date(ctx: RuleContext, choice: ReleaseChoice[Icd10Release]) -> None:
    """Say that the diagnoses were checked against a release that does not cover the date."""
    if choice.covered or not ctx.facts.diagnoses:
        return  # nothing was checked against a release that does not apply
    release = choice.release
    ctx.add(
        FindingCode.CODE_TABLES_OUT_OF_DATE,
        "DG1-3",
        out_of_date_text(choice, ctx.facts.date_of_service),
        None,  # the lab's own tables: never a question for the office
        subject=release.version if release is not None else NO_VERSION,
        reference={
            "checked_with": release.version if release is not None else None,
            "window_from": release.effective_from.isoformat() if release else None,
            "window_to": (
                release.effective_to.isoformat() if release and release.effective_to else None
            ),
            "why": choice.why,
        },
    )


def _nearest_day(tables: CodeTables, kind: str, dos: date) -> date | None:
    """A day inside the window of the `kind` version nearest to `dos` (None if none loaded)."""
    versions = [m for m in tables.manifests() if m.kind == kind]
    if not versions:
        return None
    earlier = [m for m in versions if m.effective_from <= dos]
    if earlier:
        return max(earlier, key=lambda m: m.effective_from).effective_from
    return min(versions, key=lambda m: m.effective_from).effective_from


def policies_and_bundling(tables: CodeTables, dos: date) -> tuple[CoveragePolicies, Bundling]:
    """The coverage and bundling versions in force on `dos`; outside every window (an order
    dated before the first loaded version), the nearest version - recorded like any other."""
    policies = tables.policies_for(dos)
    if policies.version == NO_VERSION:
        day = _nearest_day(tables, "coverage", dos)
        if day is not None:
            policies = tables.policies_for(day)
    bundling = tables.bundling_for(dos)
    if bundling.version == NO_VERSION:
        day = _nearest_day(tables, "bundling", dos)
        if day is not None:
            bundling = tables.bundling_for(day)
    return policies, bundling


def verify(
    order: OrderFacts,
    tables: CodeTables,
    history: PatientHistory = NO_HISTORY,
    rules: RuleSettings = DEFAULT_RULES,
) -> VerificationResult:
    """One order (a message with a single order group)."""
    return verify_message((order,), tables, (history,), rules)[0]


def verify_message(
    orders: Sequence[OrderFacts],
    tables: CodeTables,
    histories: Sequence[PatientHistory] | PatientHistory = NO_HISTORY,
    rules: RuleSettings = DEFAULT_RULES,
) -> list[VerificationResult]:
    """The order groups of one message, verified as one requisition: one result per order.

    `histories` is each order's history of *other* messages (or one history for all); the
    message's own groups are not history. Each group runs the per-order rules with the
    earlier groups as same-day priors (so of two identical groups the later one is the
    duplicate); the bundling and units rules then look at every test of the message with
    the same date of service together, so a panel in one group and its component or an
    overlapping panel in another put the finding on the test that should not be billed,
    whichever group it is in.
    """
    if isinstance(histories, PatientHistory):
        histories = [histories] * len(orders)
    if len(histories) != len(orders):
        raise ValueError(f"{len(orders)} orders but {len(histories)} histories")
    contexts: list[RuleContext] = []
    indexes: dict[int, PriorIndex] = {}  # id(history) -> its index: built once per history
    earlier_groups = PriorIndex()  # the tests of the groups before, grown group by group
    for index, (order, history) in enumerate(zip(orders, histories, strict=True), start=1):
        if contexts:
            earlier_groups.add(_as_priors(contexts[-1]))
        indexed = indexes.get(id(history))
        if indexed is None:
            indexed = indexes[id(history)] = PriorIndex().add(history.tests)
        choice = tables.icd10_choice(order.date_of_service)
        priors = Priors(indexed, earlier_groups)
        ctx = _context(order, tables, history, priors, rules, index, choice)
        resolve_tests(ctx)
        _out_of_date(ctx, choice)
        check_diagnoses(ctx)
        check_provider(ctx)
        check_necessity(ctx)
        check_history(ctx)
        check_bundling(ctx)
        contexts.append(ctx)
    check_message_bundling(contexts)
    return [_result(ctx) for ctx in contexts]


def _group_ref(order: OrderFacts, index: int) -> str:
    group = f"group {index} of this message"
    return f"{order.placer_order_number} ({group})" if order.placer_order_number else group


def _as_priors(ctx: RuleContext) -> list[PriorTest]:
    """An order group's resolved tests as same-day priors for the groups after it."""
    facts = ctx.facts
    diagnoses = tuple(d.code for d in ctx.diagnoses)
    ref = ctx.group_ref
    return [
        PriorTest(
            date_of_service=facts.date_of_service,
            cpt=entry.cpt,
            local_code=entry.code,
            diagnoses=diagnoses,
            order_ref=ref,
            same_message=True,
        )
        for entry in ctx.resolved
        if entry is not None
    ]


def _context(
    order: OrderFacts,
    tables: CodeTables,
    history: PatientHistory,
    priors: Priors,
    rules: RuleSettings,
    index: int,
    choice: ReleaseChoice[Icd10Release],
) -> RuleContext:
    dos = order.date_of_service
    policies, bundling = policies_and_bundling(tables, dos)
    effective = rules.for_payers(
        order.interface, [(p.company_id, p.company_name) for p in order.all_payers()]
    )
    medicare = effective.medicare_policies
    if medicare is None:
        # any insurance, primary or secondary: Medicare as a secondary payer still decides
        # what it covers, and a Medicare Advantage plan follows the NCDs (42 CFR 422.101)
        medicare = any(
            policies.medicare_applies(p.company_id, p.company_name, p.plan_id)
            for p in order.all_payers()
        )
    return RuleContext(
        facts=order,
        history=history,
        priors=priors,
        tables=tables,
        release=choice.release,
        catalog=tables.catalog,
        policies=policies,
        bundling=bundling,
        medicare=medicare,
        rules=effective,
        release_in_force=choice.covered,
        dx_edits=tables.dx_edits_for(dos),
        group_ref=_group_ref(order, index),
        group_index=index,
    )


def _result(ctx: RuleContext) -> VerificationResult:
    order = ctx.facts
    release = ctx.release
    findings = ctx.findings
    if len(findings) > 1:
        findings.sort(key=lambda f: _SEVERITY_ORDER[f.severity])
    held = any(f.is_hold and f.key not in order.overridden for f in findings)
    resolved = tuple(
        ResolvedTest(
            seq=test.seq,
            location=test.location,
            local_code=entry.code if entry else None,
            loinc=entry.loinc if entry else None,
            cpt=entry.cpt if entry else None,
            description=entry.description if entry else "",
            necessity=ctx.necessity.get(test.seq, "unverified"),
            policies=ctx.policies_applied.get(test.seq, ()),
        )
        for test, entry in zip(order.tests, ctx.resolved, strict=True)
    )
    # The same kinds as CodeTables.versions_for, naming what was actually used.
    versions = {
        "icd10cm": release.version if release is not None else "none",
        "catalog": ctx.catalog.version,
        "coverage": ctx.policies.version,
        "bundling": ctx.bundling.version,
        "dxedits": ctx.dx_edits.version,
    }
    return VerificationResult(
        status=OrderStatus.HELD if held else OrderStatus.VERIFIED,
        findings=tuple(findings),
        tests=resolved,
        table_versions=versions,
        rules_version=RULES_VERSION,
    )
