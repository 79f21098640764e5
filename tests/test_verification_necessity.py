"""Medical necessity that cannot be checked: a policy the catalog names but the coverage tables
do not hold, and a policy whose lists are marked incomplete. Never a pass, never a false hold."""

from __future__ import annotations

from dataclasses import replace

from verification_support import (
    BUNDLING,
    CATALOG,
    COMMERCIAL,
    POLICIES,
    RELEASE_2025,
    RELEASE_2026,
    TABLES,
    order,
)

from labintake.codes.catalog import CatalogEntry, TestCatalog
from labintake.codes.tables import CodeTables
from labintake.statuses import FindingCode, OrderStatus, Severity
from labintake.verification import TestFacts, verify
from labintake.verification.findings import Finding, VerificationResult
from labintake.verification.rule_settings import RuleSettings

F = FindingCode


def _only(result: VerificationResult, code: FindingCode) -> Finding:
    matching = [f for f in result.findings if f.code is code]
    assert len(matching) == 1, [(f.code, f.location) for f in result.findings]
    return matching[0]


def _tables_with_incomplete_lipids() -> CodeTables:
    lipids = POLICIES.ncd("190.23")
    assert lipids is not None
    partial = replace(lipids, complete=False)
    policies = replace(
        POLICIES, ncds=tuple(partial if p.ncd == "190.23" else p for p in POLICIES.ncds)
    )
    return CodeTables(
        icd10=[RELEASE_2025, RELEASE_2026], catalog=CATALOG, policies=policies, bundling=BUNDLING
    )


PARTIAL = _tables_with_incomplete_lipids()


def test_catalog_policy_missing_from_the_tables_makes_necessity_unverified_not_a_pass() -> None:
    # TSH names NCD 190.22 in the catalog; the test coverage tables hold no 190.22.
    result = verify(order(["TSH"], ["R53.83"]), TABLES)
    finding = _only(result, F.NECESSITY_UNVERIFIED)
    assert (finding.location, finding.severity) == ("OBR[1]-4", Severity.WARN)
    assert "NCD 190.22" in finding.message
    assert "coverage-test" in finding.message
    assert finding.reference["policies"] == ["NCD 190.22"]
    assert result.tests[0].necessity == "unverified"
    assert result.tests[0].policies == ("NCD 190.22 (not loaded)",)  # shown on the screen
    assert result.status is OrderStatus.VERIFIED  # a warning: the coder sees it, nothing waits


def test_a_lab_can_make_an_unverified_test_a_hold() -> None:
    rules = RuleSettings.from_mapping({"rules": {"NECESSITY_UNVERIFIED": "hold"}})
    result = verify(order(["TSH"], ["R53.83"]), TABLES, rules=rules)
    assert _only(result, F.NECESSITY_UNVERIFIED).severity is Severity.HOLD
    assert result.status is OrderStatus.HELD
    off = RuleSettings.from_mapping({"rules": {"NECESSITY_UNVERIFIED": "off"}})
    quiet = verify(order(["TSH"], ["R53.83"]), TABLES, rules=off)
    assert quiet.findings == ()
    assert quiet.tests[0].necessity == "unverified"  # turning the finding off hides no pass


def test_missing_policy_matters_only_where_the_medicare_rules_apply() -> None:
    result = verify(order(["TSH"], ["R53.83"], payer=COMMERCIAL), TABLES)
    assert result.findings == ()
    assert result.tests[0].necessity == "not_applicable"


def test_a_named_local_policy_that_is_not_loaded_is_unverified_too() -> None:
    catalog = TestCatalog(
        "catalog-lcd",
        [CatalogEntry("VITD", "62292-8", "82306", "vitamin D", "serum", lcd="L99999")],
    )
    tables = CodeTables(
        icd10=[RELEASE_2025, RELEASE_2026], catalog=catalog, policies=POLICIES, bundling=BUNDLING
    )
    finding = _only(verify(order(["VITD"], ["R53.83"]), tables), F.NECESSITY_UNVERIFIED)
    assert finding.reference["policies"] == ["LCD L99999"]


def test_incomplete_policy_passes_listed_diagnoses_and_leaves_others_unverified() -> None:
    assert verify(order(["LIPID"], ["E78.5"]), PARTIAL).findings == ()
    result = verify(order(["LIPID"], ["D64.9"]), PARTIAL)
    finding = _only(result, F.NECESSITY_UNVERIFIED)
    assert finding.reference["policy"] == "190.23"
    assert finding.reference["diagnoses"] == ["D64.9"]
    assert "incomplete" in finding.message
    assert result.tests[0].necessity == "unverified"
    assert not any(f.code is F.NECESSITY_NOT_SUPPORTED for f in result.findings)


def test_a_complete_policy_still_holds_the_same_diagnosis() -> None:
    result = verify(order(["LIPID"], ["D64.9"]), TABLES)
    assert _only(result, F.NECESSITY_NOT_SUPPORTED).severity is Severity.HOLD
    assert result.tests[0].necessity == "fail"


def test_never_covered_diagnosis_is_a_hold_even_under_an_incomplete_policy() -> None:
    alone = verify(order(["LIPID"], ["Z00.00"]), PARTIAL)
    assert _only(alone, F.NECESSITY_NOT_SUPPORTED).severity is Severity.HOLD
    assert alone.tests[0].necessity == "fail"
    # With another diagnosis the incomplete list says nothing about, it is unverified.
    beside = verify(order(["LIPID"], ["Z00.00", "D64.9"]), PARTIAL)
    assert _only(beside, F.NECESSITY_UNVERIFIED).reference["diagnoses"] == ["D64.9"]
    assert beside.tests[0].necessity == "unverified"


def test_abn_on_file_turns_unverified_into_information() -> None:
    test = TestFacts(seq=1, location="OBR[1]-4", code="LIPID", modifiers=("GA",))
    result = verify(order([test], ["D64.9"]), PARTIAL)
    assert _only(result, F.NECESSITY_UNVERIFIED).severity is Severity.INFO
    missing = TestFacts(seq=1, location="OBR[1]-4", code="TSH", modifiers=("GZ",))
    assert _only(verify(order([missing], ["R53.83"]), TABLES), F.NECESSITY_UNVERIFIED).severity is (
        Severity.INFO
    )


def test_unverified_questions_to_the_office_never_name_a_code() -> None:
    for result in (
        verify(order(["TSH"], ["R53.83"]), TABLES),
        verify(order(["LIPID"], ["D64.9"]), PARTIAL),
    ):
        clarify = _only(result, F.NECESSITY_UNVERIFIED).clarify or ""
        assert "reason" in clarify
        assert "R53.83" not in clarify
        assert "D64.9" not in clarify
