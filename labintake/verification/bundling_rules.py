"""Bundling and units: a panel with its own component, overlapping panels, NCCI PTP pairs,
components that together make up a panel, and units over the MUE limit.

A message is one requisition: its order groups are checked together per date of service
(`check_message_bundling`), so the finding lands on the test that should not be reported as
well - the component, the smaller of two overlapping panels, or the PTP column 2 code - in
whichever group it sits. Orders of other messages for the same patient and day come in as
history (`check_bundling`). Panels and their components come from the catalog entry (or the
bundling tables). Sources: NCCI Policy Manual for Medicare Services, chapter 10 (pathology and
laboratory: organ and disease panels, B.; units, MUE); CMS Claims Processing Manual ch. 16
(laboratory services).
"""

from __future__ import annotations

from bisect import bisect_right
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from datetime import date
from operator import itemgetter
from typing import NamedTuple

from labintake.codes.bundling import PtpEdit
from labintake.codes.catalog import CatalogEntry, TestCatalog
from labintake.statuses import FindingCode, Severity
from labintake.verification.context import RuleContext
from labintake.verification.facts import PriorTest, TestFacts
from labintake.verification.history import REPEAT_MODIFIERS

PTP_MODIFIERS = frozenset({"59", "XE", "XS", "XP", "XU", "91"})
MAI_MEANING = {1: "line edit", 2: "date-of-service policy edit", 3: "date-of-service clinical edit"}
_ASK_BOTH = (
    "Please confirm whether both are intended and, if so, the documented reason for the "
    "separate test."
)

# One requested test of the message: the order group's context, the test, its catalog entry.
Line = tuple[RuleContext, TestFacts, CatalogEntry]
# Why a test bundles with one already ordered that day, and the PTP edit when that is why.
EditReason = PtpEdit | None


def _ordered(ctx: RuleContext) -> list[tuple[TestFacts, CatalogEntry]]:
    return [
        (test, entry)
        for test, entry in zip(ctx.facts.tests, ctx.resolved, strict=True)
        if entry is not None
    ]


def check_bundling(ctx: RuleContext) -> None:
    """One order group against the patient's other orders of the same day (other messages),
    and codes Medicare does not recognise that are reported as their parts."""
    ordered = _ordered(ctx)
    if ctx.medicare:
        for test, entry in ordered:
            if entry.medicare_parts:
                _medicare_parts(ctx, test, entry)
    if ordered and ctx.history.tests:
        _same_day(ctx, ordered)


def check_message_bundling(contexts: Sequence[RuleContext]) -> None:
    """Every test of the message with the same date of service, across its order groups."""
    by_day: dict[date, list[Line]] = defaultdict(list)
    for ctx in contexts:
        for test, entry in _ordered(ctx):
            by_day[ctx.facts.date_of_service].append((ctx, test, entry))
    for lines in by_day.values():
        if len(lines) > 1:
            _pairs(lines)
            _unbundled_panels(lines)
        _units(lines)


def _medicare_parts(ctx: RuleContext, test: TestFacts, entry: CatalogEntry) -> None:
    """E.g. the general health panel 80050 is not on the Medicare Clinical Laboratory Fee
    Schedule: for a Medicare claim its parts are reported instead (a coder's task; nothing to
    ask the office)."""
    parts = " + ".join(entry.medicare_parts)
    ctx.add(
        FindingCode.TEST_MEDICARE_PARTS,
        test.location,
        f"{entry.description} ({entry.cpt}) is not recognised by Medicare (not on the Clinical "
        f"Laboratory Fee Schedule): report its parts instead, {parts}, each line with its own "
        "diagnosis. The parts are then checked like any other test.",
        None,
        test_seq=test.seq,
        subject=entry.cpt,
        reference={"parts": list(entry.medicare_parts)},
    )


def _where(line: Line, other: Line) -> str:
    """Where `other` sits as seen from `line`: the same order, or another group."""
    if line[0] is other[0]:
        return "on the same order"
    ctx, test = other[0], other[1]
    placer = ctx.facts.placer_order_number
    at = f"placer {placer}, {test.location}" if placer else test.location
    return f"in order group {ctx.group_index} of the same message ({at})"


def _same_day(ctx: RuleContext, ordered: list[tuple[TestFacts, CatalogEntry]]) -> None:
    """Tests of this order against those already ordered for the patient the same day (NCCI
    edits and panel rules apply per date of service, across orders).

    The earlier tests are taken once per (entry, order), in the order first seen (a repeat
    would raise the same finding again); what two entries are to each other is decided once,
    and each test looks only at the earlier entries it relates to. So the cost grows with the
    tests times the distinct codes of the day, not with the tests times the earlier tests (a
    patient may have many messages of up to 10,000 tests each the same day)."""
    dos = ctx.facts.date_of_service
    catalog = ctx.catalog
    entries, refs = ctx.priors.history.derived(
        ("same-day entries", dos, id(catalog)),
        lambda: _earlier_entries(ctx.priors.history.coded_on.get(dos, ()), catalog),
    )
    reasons: dict[tuple[int, int], tuple[str, EditReason] | None] = {}
    for test, current in ordered:
        hits: list[tuple[int, str, CatalogEntry, tuple[str, EditReason]]] = []
        for entry_id, other in entries.items():
            key = (id(current), entry_id)
            if key not in reasons:
                reasons[key] = _same_day_reason(ctx, current, other)
            why = reasons[key]
            if why is not None:
                hits.extend((position, ref, other, why) for position, ref in refs[entry_id])
        hits.sort(key=itemgetter(0))
        for _, ref, other, why in hits:
            _same_day_finding(ctx, test, current, other, ref, why)


def _earlier_entries(
    priors: Iterable[PriorTest], catalog: TestCatalog
) -> tuple[dict[int, CatalogEntry], dict[int, list[tuple[int, str]]]]:
    """The catalog entries of the day's earlier tests (by id), and for each the orders that
    have it, as (first position, order ref)."""
    earlier: dict[tuple[int, str], int] = {}  # (entry, order ref) -> first position
    entries: dict[int, CatalogEntry] = {}
    looked_up: dict[tuple[str | None, str], CatalogEntry | None] = {}
    for prior in priors:
        assert prior.cpt is not None  # coded_on holds only tests with a CPT
        codes = (prior.local_code, prior.cpt)
        if codes in looked_up:
            entry = looked_up[codes]
        else:
            entry = looked_up[codes] = (
                catalog.by_code(prior.local_code) if prior.local_code else None
            ) or catalog.by_cpt(prior.cpt)
        if entry is not None:
            entries[id(entry)] = entry
            earlier.setdefault((id(entry), prior.order_ref), len(earlier))
    refs: dict[int, list[tuple[int, str]]] = {}  # entry -> (position, order ref)
    for (entry_id, ref), position in earlier.items():
        refs.setdefault(entry_id, []).append((position, ref))
    return entries, refs


def _same_day_finding(
    ctx: RuleContext,
    test: TestFacts,
    current: CatalogEntry,
    other: CatalogEntry,
    ref: str,
    why: tuple[str, EditReason],
) -> None:
    reason, edit = why
    dos = ctx.facts.date_of_service
    severity: Severity | None = None
    if edit is not None and edit.modifier_indicator != "0":
        modifier = any(m in PTP_MODIFIERS for m in test.modifiers)
        severity = Severity.INFO if modifier else Severity.WARN
    ctx.add(
        FindingCode.BUNDLED_COMPONENT,
        test.location,
        f"{current.description} ({current.cpt}) is ordered for {dos:%Y-%m-%d} while "
        f"{other.description} ({other.cpt}) is already ordered for this patient that "
        f"day (order {ref}): {reason}.",
        f"The patient already has {other.description} ordered for {dos:%Y-%m-%d} "
        f"(order {ref}); this order adds {current.description}, which overlaps it. " + _ASK_BOTH,
        test_seq=test.seq,
        subject=f"{current.cpt}|{other.cpt}@{ref}",
        reference={"other_order": ref, "other_cpt": other.cpt},
        severity=severity,
    )


def _same_day_reason(
    ctx: RuleContext, current: CatalogEntry, other: CatalogEntry
) -> tuple[str, EditReason] | None:
    if other.cpt == current.cpt:
        return None  # the same test again is a duplicate order
    parts = _components(ctx, current)
    other_parts = _components(ctx, other)
    if current.cpt in other_parts:
        return f"it is a component of {other.description}", None
    if other.cpt in parts:
        return f"{other.description} is one of this panel's components", None
    if parts and other_parts and not set(parts).isdisjoint(other_parts):
        shared = sorted(set(parts) & set(other_parts))
        return f"the two panels overlap (shared tests: {' '.join(shared)})", None
    edit = ctx.bundling.ptp(current.cpt, other.cpt, ctx.facts.date_of_service)
    if edit is None:
        return None
    return (
        f"an NCCI procedure-to-procedure pair (column 1 {edit.column1}, modifier "
        f"indicator {edit.modifier_indicator})"
    ), edit


def _parts(ctx: RuleContext, cpt: str) -> tuple[str, ...]:
    entry = ctx.catalog.by_cpt(cpt)
    return (entry.components if entry else ()) or ctx.bundling.panel_components(cpt)


def _components(ctx: RuleContext, entry: CatalogEntry) -> tuple[str, ...]:
    """A panel's components; a component that is itself a panel (80053 in 80050) brings its
    own components too, so a test inside the inner panel is seen as part of the outer one."""
    parts = entry.components or ctx.bundling.panel_components(entry.cpt)
    nested = [sub for part in parts for sub in _parts(ctx, part) if sub != entry.cpt]
    return tuple(dict.fromkeys((*parts, *nested))) if nested else parts


class _Relation(NamedTuple):
    """What a test of one entry is to a later test of another (same requisition, same day):
    the finding goes on the later line (`on_later`) or the earlier one, keyed by `subject`,
    and `record(earlier line, later line)` adds it."""

    on_later: bool
    subject: str
    record: Callable[[Line, Line], None]


def _relation(ctx: RuleContext, a: CatalogEntry, b: CatalogEntry) -> _Relation | None:
    """How a line of `a` and a later line of `b` bundle, from the entries alone (the earlier
    line's tables and date of service): a component, overlapping panels, a PTP pair, or
    nothing (the same test twice is a duplicate, not a bundling question)."""
    if a.cpt == b.cpt:
        return None
    parts_a = _components(ctx, a)
    parts_b = _components(ctx, b)
    if b.cpt in parts_a:
        return _Relation(True, f"{b.cpt}<{a.cpt}", lambda x, y: _component(y, x))
    if a.cpt in parts_b:
        return _Relation(False, f"{a.cpt}<{b.cpt}", _component)
    if parts_a and parts_b and not set(parts_a).isdisjoint(parts_b):
        if set(parts_a) <= set(parts_b) or (
            not set(parts_b) <= set(parts_a) and len(parts_a) < len(parts_b)
        ):
            return _Relation(
                False, f"{a.cpt}<{b.cpt}", lambda x, y: _overlap(x, parts_a, y, parts_b)
            )
        return _Relation(True, f"{b.cpt}<{a.cpt}", lambda x, y: _overlap(y, parts_b, x, parts_a))
    edit = ctx.bundling.ptp(a.cpt, b.cpt, ctx.facts.date_of_service)
    if edit is None:
        return None
    indicator, column1 = edit.modifier_indicator, edit.column1
    if edit.column2 == b.cpt:
        return _Relation(True, f"{b.cpt}~{a.cpt}", lambda x, y: _ptp(y, x, indicator, column1))
    return _Relation(False, f"{a.cpt}~{b.cpt}", lambda x, y: _ptp(x, y, indicator, column1))


def _pairs(lines: list[Line]) -> None:
    """Every pair of lines (earlier, later) whose entries bundle gets its finding, in the
    order of the pairs, once per line and subject (a repeat would carry the same key).

    Linear in the lines times the distinct entries, not quadratic in the lines: a message may
    carry up to 10,000 tests (docs/limits.md), mostly the same few codes. The relation is
    decided once per pair of entries (when first needed); a finding on the earlier line needs
    only the first later line of that entry (the later ones would repeat it), and a finding on
    the later lines is given to all of an entry's later lines by the first line that relates
    to them (the later ones would repeat it)."""
    positions: dict[int, list[int]] = {}
    for index, line in enumerate(lines):
        positions.setdefault(id(line[2]), []).append(index)
    entries = {id(line[2]): line[2] for line in lines}
    decided: dict[tuple[int, int, date, int], dict[int, _Relation | None]] = {}
    covered: set[tuple[str, int]] = set()  # (subject, entry): its later lines have the finding
    recorded: set[tuple[int, str]] = set()  # (line, subject)
    for i, earlier in enumerate(lines):
        ctx, _, entry = earlier
        key = (id(ctx.catalog), id(ctx.bundling), ctx.facts.date_of_service, id(entry))
        relations = decided.setdefault(key, {})
        hits: list[tuple[int, _Relation]] = []
        for other, indices in positions.items():
            if indices[-1] <= i:
                continue  # no line of that entry comes later
            if other in relations:
                relation = relations[other]
            else:
                relation = relations[other] = _relation(ctx, entry, entries[other])
            if relation is None:
                continue
            start = bisect_right(indices, i)
            if not relation.on_later:
                hits.append((indices[start], relation))
            elif (relation.subject, other) not in covered:
                covered.add((relation.subject, other))
                hits.extend((j, relation) for j in indices[start:])
        if len(hits) > 1:
            hits.sort(key=itemgetter(0))
        for j, relation in hits:
            mark = (j if relation.on_later else i, relation.subject)
            if mark not in recorded:
                recorded.add(mark)
                relation.record(earlier, lines[j])


def _component(line: Line, panel_line: Line) -> None:
    ctx, test, part = line
    panel = panel_line[2]
    ctx.add(
        FindingCode.BUNDLED_COMPONENT,
        test.location,
        f"{part.description} ({part.cpt}) is a component of {panel.description} "
        f"({panel.cpt}) {_where(line, panel_line)}: a component is not reported with its "
        "panel.",
        f"The order includes {panel.description} and also {part.description}, which the "
        f"panel already contains. {_ASK_BOTH}",
        test_seq=test.seq,
        subject=f"{part.cpt}<{panel.cpt}",
        reference={"panel": panel.cpt, "component": part.cpt, "panel_at": panel_line[1].location},
    )


def _overlap(
    line: Line,
    smaller_parts: tuple[str, ...],
    larger_line: Line,
    larger_parts: tuple[str, ...],
) -> None:
    ctx, test, smaller = line
    larger = larger_line[2]
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
        f"({larger.cpt}) {_where(line, larger_line)}: {detail}. Overlapping panels are not "
        "reported together.",
        f"The order includes both {larger.description} and {smaller.description}, which "
        f"share {len(shared)} tests. {_ASK_BOTH}",
        test_seq=test.seq,
        subject=f"{smaller.cpt}<{larger.cpt}",
        reference={
            "panel": larger.cpt,
            "overlapping": smaller.cpt,
            "shared": shared,
            "not_in_panel": extra,
            "panel_at": larger_line[1].location,
        },
    )


def _ptp(line: Line, other_line: Line, indicator: str, column1: str) -> None:
    ctx, test, column2 = line
    other = other_line[2]
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
        f"{column2.description} ({column2.cpt}) with {other.description} ({other.cpt}) "
        f"{_where(line, other_line)} is an NCCI procedure-to-procedure pair (column 1 "
        f"{column1}, modifier indicator {indicator}): {rule}."
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


def _unbundled_panels(lines: list[Line]) -> None:
    """Every component of a panel ordered one by one: the panel code is what applies."""
    cpts = {entry.cpt for _, _, entry in lines}
    bundling = lines[0][0].bundling
    for panel, parts in bundling.panels().items():
        if panel in cpts or len(parts) < 2 or not cpts.issuperset(parts):
            continue
        ctx, first, _ = next(line for line in lines if line[2].cpt in parts)
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


def _units(lines: list[Line]) -> None:
    """MAI 1 limits apply per line; MAI 2 and 3 to the day's total of the code across the
    message and, for a line that says it is a repeat (91, 76, 77), the patient's other orders of
    that date of service (the MUE is per beneficiary per day; without a repeat modifier the
    same code in another order that day is a duplicate order, not counted twice). A line
    already reported as a duplicate of another line is not counted again."""
    units: dict[str, int] = defaultdict(int)
    last: dict[str, Line] = {}
    for line in lines:
        ctx, test, entry = line
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
        last[entry.cpt] = line
    for cpt, total in units.items():
        ctx, test, entry = last[cpt]
        limit = ctx.bundling.mue(cpt)
        if limit is None:
            continue
        before = 0
        if not REPEAT_MODIFIERS.isdisjoint(test.modifiers):
            dos = ctx.facts.date_of_service
            before = sum(
                max(p.units, 1) for p in ctx.priors.history.coded_on.get(dos, ()) if p.cpt == cpt
            )
        if total + before > limit.units:
            _over(ctx, test, entry, total + before, limit.units, limit.mai, before)


def _over(
    ctx: RuleContext,
    test: TestFacts,
    entry: CatalogEntry,
    total: int,
    allowed: int,
    mai: int,
    earlier: int = 0,
) -> None:
    kind = MAI_MEANING.get(mai, f"MAI {mai}")
    other = f", {earlier} of them in the patient's other orders that day" if earlier else ""
    ctx.add(
        FindingCode.UNITS_OVER_LIMIT,
        test.location,
        f"{total} units of {entry.description} ({entry.cpt}) for one date of service{other}; "
        f"the MUE limit is {allowed} (MAI {mai}, {kind}).",
        f"The order asks for {total} of {entry.description} on the same day. Please "
        "confirm the number intended and, for repeats, the documented reason and times.",
        test_seq=test.seq,
        subject=entry.cpt,
        reference={"units": total, "limit": allowed, "mai": mai},
    )
