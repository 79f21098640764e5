"""Bundling across a requisition and the same day stays linear in the tests, with the same
findings as the rule applied to every pair of tests.

The reference below is the rule applied the obvious way (every earlier test of the message,
then every test already ordered that day, against each test, each pair decided on its own):
quadratic in the tests, which a message at the limits (100 orders of 100 tests) turned into
seconds of CPU per message. The rules now decide each pair of codes once and visit only the
related tests; these properties check that what a coder sees is the same: the same findings,
in the same order, on the same tests, with the same texts. The only difference allowed is an
exact repeat (the same code, place and subject raised again by another copy of the same
test), which the stored order never held twice anyway.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from labintake.codes.tables import CodeTables, load_code_tables
from labintake.statuses import FindingCode
from labintake.verification import (
    DiagnosisFacts,
    OrderFacts,
    PatientHistory,
    PayerFacts,
    TestFacts,
    verify_message,
)
from labintake.verification import bundling_rules as rules
from labintake.verification.bundling_rules import (
    Line,
    _relation,
    _same_day_finding,
    _same_day_reason,
)
from labintake.verification.context import RuleContext
from labintake.verification.facts import PriorTest
from labintake.verification.findings import VerificationResult

REPO = Path(__file__).resolve().parent.parent
DOS = date(2026, 5, 12)
# Panels, their components, overlapping panels and a PTP pair with a modifier indicator of 1
# (80061 / 83721), from the shipped catalog and bundling tables; 85025 / 85027 are a pair too.
CODES = [
    "80053", "80048", "80051", "80069", "80076", "80050", "80061", "82465", "83718",
    "84478", "83721", "85025", "85027", "82947", "82565", "84443", "82310", "84132",
]  # fmt: skip
MODIFIERS = ["", "59", "91", "XU"]


@pytest.fixture(scope="module")
def tables() -> CodeTables:
    return load_code_tables(REPO / "code_tables")


def _reference_pairs(lines: list[Line]) -> None:
    """Every pair of tests of the message, earlier then later, each decided on its own."""
    for i, earlier in enumerate(lines):
        for later in lines[i + 1 :]:
            relation = _relation(earlier[0], earlier[2], later[2])
            if relation is not None:
                relation.record(earlier, later)


def _reference_same_day(ctx: RuleContext, ordered: list[Any]) -> None:
    """Every test against every test already ordered that day, each decided on its own."""
    dos = ctx.facts.date_of_service
    earlier = []
    for prior in ctx.history.tests:
        if prior.same_message or prior.date_of_service != dos or not prior.cpt:
            continue
        entry = (ctx.catalog.by_code(prior.local_code) if prior.local_code else None) or (
            ctx.catalog.by_cpt(prior.cpt)
        )
        if entry is not None:
            earlier.append((entry, prior.order_ref))
    for test, current in ordered:
        for other, ref in earlier:
            why = _same_day_reason(ctx, current, other)
            if why is not None:
                _same_day_finding(ctx, test, current, other, ref, why)


@contextmanager
def _reference_rules() -> Iterator[None]:
    saved = rules._pairs, rules._same_day
    rules._pairs, rules._same_day = _reference_pairs, _reference_same_day  # type: ignore[assignment]
    try:
        yield
    finally:
        rules._pairs, rules._same_day = saved


def _seen(results: list[VerificationResult]) -> list[list[tuple[Any, ...]]]:
    """Each order's findings as a coder sees them: the first of each key, in order."""
    shown = []
    for result in results:
        first: dict[tuple[str, str, str], tuple[Any, ...]] = {}
        for f in result.findings:
            first.setdefault(
                f.key, (f.key, f.severity, f.message, f.clarify, f.test_seq, dict(f.reference))
            )
        shown.append(list(first.values()))
    return shown


def _group(first_obr: int, tests: list[tuple[str, str]], placer: str) -> OrderFacts:
    return OrderFacts(
        tests=tuple(
            TestFacts(
                i + 1,
                f"OBR[{first_obr + i}]-4",
                code,
                "CPT",
                modifiers=(modifier,) if modifier else (),
            )
            for i, (code, modifier) in enumerate(tests)
        ),
        diagnoses=(DiagnosisFacts("E78.5", "DG1[1]-3", "I10"),),
        date_of_service=DOS,
        provider_npi="1049382710",
        provider_name="Dana Whitfield",
        payer=PayerFacts("CMS", "Medicare Part B", "MCRB"),
        placer_order_number=placer,
    )


def _message(groups: list[list[tuple[str, str]]]) -> list[OrderFacts]:
    orders, obr = [], 1
    for index, tests in enumerate(groups, start=1):
        orders.append(_group(obr, tests, f"PL{index}"))
        obr += len(tests)
    return orders


_test = st.tuples(st.sampled_from(CODES), st.sampled_from(MODIFIERS))
_groups = st.lists(st.lists(_test, min_size=1, max_size=8), min_size=1, max_size=4)
_prior = st.tuples(
    st.sampled_from(CODES), st.sampled_from(["ORD7", "ORD8", "ORD9"]), st.integers(0, 2)
)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(groups=_groups, priors=st.lists(_prior, max_size=12))
# glucose is in both panels ordered earlier that day; the first panel comes again after the
# second: the findings keep the order in which each was first ordered
@example(
    groups=[[("82947", "")]],
    priors=[("80053", "ORD7", 0), ("80048", "ORD8", 0), ("80053", "ORD7", 0)],
)
def test_findings_are_those_of_every_pair(
    tables: CodeTables, groups: list[list[tuple[str, str]]], priors: list[Any]
) -> None:
    history = PatientHistory(
        tuple(
            PriorTest(DOS - timedelta(days=days), cpt, None, ("E78.5",), ref)
            for cpt, ref, days in priors
        )
    )
    orders = _message(groups)
    results = verify_message(orders, tables, history)
    with _reference_rules():
        expected = verify_message(orders, tables, history)
    assert _seen(results) == _seen(expected)
    assert [r.status for r in results] == [r.status for r in expected]


def test_a_message_at_the_limits_decides_each_pair_of_codes_once(
    tables: CodeTables, monkeypatch: pytest.MonkeyPatch
) -> None:
    """100 orders of 100 tests (panels, components, a PTP pair), the same tests ordered the
    same day in another message: the pairs of codes are decided a bounded number of times,
    not once per pair of tests (50 million for the message, 100 million against the day)."""
    calls = {"relation": 0, "same_day": 0}
    relation, same_day = rules._relation, rules._same_day_reason

    def counted_relation(*args: Any) -> Any:
        calls["relation"] += 1
        return relation(*args)

    def counted_same_day(*args: Any) -> Any:
        calls["same_day"] += 1
        return same_day(*args)

    monkeypatch.setattr(rules, "_relation", counted_relation)
    monkeypatch.setattr(rules, "_same_day_reason", counted_same_day)
    codes = ["80061", "82465", "83721", "80053", "80048"]
    groups = [[(codes[(g + t) % 5], "") for t in range(100)] for g in range(100)]
    history = PatientHistory(
        tuple(
            PriorTest(DOS, codes[t % 5], None, ("E78.5",), f"ORD{t % 100}") for t in range(10_000)
        )
    )
    results = verify_message(_message(groups), tables, history)
    assert len(results) == 100
    bundled = [f for r in results for f in r.findings if f.code == FindingCode.BUNDLED_COMPONENT]
    assert bundled, "the panels and their components were not found together"
    # the message: once per pair of codes; against the day: once per order and pair of codes
    assert calls["relation"] <= 25  # one ordered pair of codes each
    assert calls["same_day"] <= 100 * 25
