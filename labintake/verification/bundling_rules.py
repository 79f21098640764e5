"""Bundling and units: a panel with its own component, overlapping panels, NCCI PTP pairs,
components that together make up a panel, and units over the MUE limit.

Panels and their components come from the catalog entry (or the bundling tables). The finding
sits on the test that should not be reported as well: the component, the smaller of two
overlapping panels, or the PTP column 2 code.
"""

from __future__ import annotations

from collections import defaultdict

from labintake.codes.catalog import CatalogEntry
from labintake.statuses import FindingCode, Severity
from labintake.verification.context import RuleContext
from labintake.verification.facts import TestFacts

PTP_MODIFIERS = frozenset({"59", "XE", "XS", "XP", "XU", "91"})
MAI_MEANING = {1: "line edit", 2: "date-of-service policy edit", 3: "date-of-service clinical edit"}
_ASK_BOTH = (
    "Please confirm whether both are intended and, if so, the documented reason for the "
    "separate test."
)


def check_bundling(ctx: RuleContext) -> None:
    ordered = [
        (test, entry)
        for test, entry in zip(ctx.facts.tests, ctx.resolved, strict=True)
        if entry is not None
    ]
    if len(ordered) > 1:
        _pairs(ctx, ordered)
        _unbundled_panels(ctx, ordered)
    if ordered and ctx.history.tests:
        _same_day(ctx, ordered)
    _units(ctx, ordered)


def _same_day(ctx: RuleContext, ordered: list[tuple[TestFacts, CatalogEntry]]) -> None:
    """Tests of this order against those already ordered for the patient the same day (NCCI
    edits and panel rules apply per date of service, across orders)."""
    dos = ctx.facts.date_of_service
    catalog = ctx.catalog
    earlier: list[tuple[CatalogEntry, str]] = []
    for prior in ctx.history.tests:
        if prior.date_of_service != dos or not prior.cpt:
            continue
        entry = (catalog.by_code(prior.local_code) if prior.local_code else None) or (
            catalog.by_cpt(prior.cpt)
        )
        if entry is not None:
            earlier.append((entry, prior.order_ref))
    for test, current in ordered:
        parts = _components(ctx, current)
        for other, ref in earlier:
            if other.cpt == current.cpt:
                continue  # the same test again is a duplicate order
            other_parts = _components(ctx, other)
            severity: Severity | None = None
            if current.cpt in other_parts:
                reason = f"it is a component of {other.description}"
            elif other.cpt in parts:
                reason = f"{other.description} is one of this panel's components"
            elif parts and other_parts and not set(parts).isdisjoint(other_parts):
                shared = sorted(set(parts) & set(other_parts))
                reason = f"the two panels overlap (shared tests: {' '.join(shared)})"
            else:
                edit = ctx.bundling.ptp(current.cpt, other.cpt, dos)
                if edit is None:
                    continue
                reason = (
                    f"an NCCI procedure-to-procedure pair (column 1 {edit.column1}, modifier "
                    f"indicator {edit.modifier_indicator})"
                )
                if edit.modifier_indicator != "0":
                    modifier = any(m in PTP_MODIFIERS for m in test.modifiers)
                    severity = Severity.INFO if modifier else Severity.WARN
            ctx.add(
                FindingCode.BUNDLED_COMPONENT,
                test.location,
                f"{current.description} ({current.cpt}) is ordered for {dos:%Y-%m-%d} while "
                f"{other.description} ({other.cpt}) is already ordered for this patient that "
                f"day (order {ref}): {reason}.",
                f"The patient already has {other.description} ordered for {dos:%Y-%m-%d} "
                f"(order {ref}); this order adds {current.description}, which overlaps it. "
                + _ASK_BOTH,
                test_seq=test.seq,
                subject=f"{current.cpt}|{other.cpt}@{ref}",
                reference={"other_order": ref, "other_cpt": other.cpt},
                severity=severity,
            )


def _components(ctx: RuleContext, entry: CatalogEntry) -> tuple[str, ...]:
    return entry.components or ctx.bundling.panel_components(entry.cpt)


def _pairs(ctx: RuleContext, ordered: list[tuple[TestFacts, CatalogEntry]]) -> None:
    dos = ctx.facts.date_of_service
    for i, (test_a, a) in enumerate(ordered):
        parts_a = _components(ctx, a)
        for test_b, b in ordered[i + 1 :]:
            if a.cpt == b.cpt:
                continue  # the same test twice is a duplicate, not a bundling question
            parts_b = _components(ctx, b)
            if b.cpt in parts_a:
                _component(ctx, test_b, b, a)
            elif a.cpt in parts_b:
                _component(ctx, test_a, a, b)
            elif parts_a and parts_b and not set(parts_a).isdisjoint(parts_b):
                if set(parts_a) <= set(parts_b) or (
                    not set(parts_b) <= set(parts_a) and len(parts_a) < len(parts_b)
                ):
                    _overlap(ctx, test_a, a, parts_a, b, parts_b)
                else:
                    _overlap(ctx, test_b, b, parts_b, a, parts_a)
            else:
                edit = ctx.bundling.ptp(a.cpt, b.cpt, dos)
                if edit is None:
                    continue
                if edit.column2 == b.cpt:
                    _ptp(ctx, test_b, b, a, edit.modifier_indicator, edit.column1)
                else:
                    _ptp(ctx, test_a, a, b, edit.modifier_indicator, edit.column1)


def _component(ctx: RuleContext, test: TestFacts, part: CatalogEntry, panel: CatalogEntry) -> None:
    ctx.add(
        FindingCode.BUNDLED_COMPONENT,
        test.location,
        f"{part.description} ({part.cpt}) is a component of {panel.description} "
        f"({panel.cpt}) on the same order: a component is not reported with its panel.",
        f"The order includes {panel.description} and also {part.description}, which the "
        f"panel already contains. {_ASK_BOTH}",
        test_seq=test.seq,
        subject=f"{part.cpt}<{panel.cpt}",
        reference={"panel": panel.cpt, "component": part.cpt},
    )


def _overlap(
    ctx: RuleContext,
    test: TestFacts,
    smaller: CatalogEntry,
    smaller_parts: tuple[str, ...],
    larger: CatalogEntry,
    larger_parts: tuple[str, ...],
) -> None:
    shared = sorted(set(smaller_parts) & set(larger_parts))
    extra = sorted(set(smaller_parts) - set(larger_parts))
    if extra:
        detail = (
            f"they share {len(shared)} tests ({' '.join(shared)}); only {' '.join(extra)} of "
            f"{smaller.description} is not in {larger.description}"
        )
    else:
        detail = f"every test of {smaller.description} is in {larger.description}"
    ctx.add(
        FindingCode.BUNDLED_COMPONENT,
        test.location,
        f"{smaller.description} ({smaller.cpt}) overlaps {larger.description} "
        f"({larger.cpt}): {detail}. Overlapping panels are not reported together.",
        f"The order includes both {larger.description} and {smaller.description}, which "
        f"share {len(shared)} tests. {_ASK_BOTH}",
        test_seq=test.seq,
        subject=f"{smaller.cpt}<{larger.cpt}",
        reference={
            "panel": larger.cpt,
            "overlapping": smaller.cpt,
            "shared": shared,
            "not_in_panel": extra,
        },
    )


def _ptp(
    ctx: RuleContext,
    test: TestFacts,
    column2: CatalogEntry,
    other: CatalogEntry,
    indicator: str,
    column1: str,
) -> None:
    modifier = next((m for m in test.modifiers if m in PTP_MODIFIERS), None)
    severity: Severity | None = None
    if indicator == "0":
        rule = "no modifier can bypass this pair"
    else:
        rule = (
            "a modifier (59 or X{EPSU}) is allowed only when the record documents a separate "
            "service"
        )
        severity = Severity.INFO if modifier else Severity.WARN
    message = (
        f"{column2.description} ({column2.cpt}) with {other.description} ({other.cpt}) is an "
        f"NCCI procedure-to-procedure pair (column 1 {column1}, modifier indicator "
        f"{indicator}): {rule}."
    )
    if modifier and indicator != "0":
        message += f" The test carries modifier {modifier}."
    ctx.add(
        FindingCode.BUNDLED_COMPONENT,
        test.location,
        message,
        f"The order includes {other.description} and {column2.description} on the same day. "
        + _ASK_BOTH,
        test_seq=test.seq,
        subject=f"{column2.cpt}~{other.cpt}",
        reference={"column1": column1, "column2": column2.cpt, "modifier_indicator": indicator},
        severity=severity,
    )


def _unbundled_panels(ctx: RuleContext, ordered: list[tuple[TestFacts, CatalogEntry]]) -> None:
    """Every component of a panel ordered one by one: the panel code is what applies."""
    cpts = {entry.cpt for _, entry in ordered}
    for panel, parts in ctx.bundling.panels().items():
        if panel in cpts or len(parts) < 2 or not cpts.issuperset(parts):
            continue
        first = next(test for test, entry in ordered if entry.cpt in parts)
        ctx.add(
            FindingCode.BUNDLED_COMPONENT,
            first.location,
            f"Every component of panel {panel} ({' '.join(parts)}) is ordered separately: "
            "when all components are done, the panel code is reported instead.",
            None,
            test_seq=first.seq,
            subject=f"all<{panel}",
            reference={"panel": panel, "components": list(parts)},
            severity=Severity.INFO,
        )


def _units(ctx: RuleContext, ordered: list[tuple[TestFacts, CatalogEntry]]) -> None:
    """MAI 1 limits apply per line; MAI 2 and 3 to the day's total of the code. A line already
    reported as a duplicate of another line of this order is not counted again."""
    units: dict[str, int] = defaultdict(int)
    last: dict[str, tuple[TestFacts, CatalogEntry]] = {}
    for test, entry in ordered:
        limit = ctx.bundling.mue(entry.cpt)
        if limit is None:
            continue
        if limit.mai == 1:
            if test.units > limit.units:
                _over(ctx, test, entry, test.units, limit.units, limit.mai)
            continue
        if test.seq in ctx.duplicate_lines:
            continue
        units[entry.cpt] += max(test.units, 1)
        last[entry.cpt] = (test, entry)
    for cpt, total in units.items():
        limit = ctx.bundling.mue(cpt)
        if limit is not None and total > limit.units:
            test, entry = last[cpt]
            _over(ctx, test, entry, total, limit.units, limit.mai)


def _over(
    ctx: RuleContext, test: TestFacts, entry: CatalogEntry, total: int, allowed: int, mai: int
) -> None:
    kind = MAI_MEANING.get(mai, f"MAI {mai}")
    ctx.add(
        FindingCode.UNITS_OVER_LIMIT,
        test.location,
        f"{total} units of {entry.description} ({entry.cpt}) for one date of service; the MUE "
        f"limit is {allowed} (MAI {mai}, {kind}).",
        f"The order asks for {total} of {entry.description} on the same day. Please "
        "confirm the number intended and, for repeats, the documented reason and times.",
        test_seq=test.seq,
        subject=entry.cpt,
        reference={"units": total, "limit": allowed, "mai": mai},
    )
