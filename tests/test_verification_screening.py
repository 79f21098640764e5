"""Screening benefits against the shipped screening table, with diagnostic codes the sample
catalog may lack (86803, 87389, 82274) added to an in-memory catalog."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from labintake.codes.catalog import CatalogEntry, TestCatalog
from labintake.codes.tables import CodeTables, load_code_tables
from labintake.verification import (
    DiagnosisFacts,
    OrderFacts,
    PatientHistory,
    PayerFacts,
    PriorTest,
    TestFacts,
    verify,
)
from labintake.verification.modifiers import advice

REPO = Path(__file__).resolve().parent.parent
DOS = date(2026, 5, 12)
MEDICARE = PayerFacts("CMS", "Medicare Part B", "MCRB")
EXTRA = [
    CatalogEntry("HCVAB", None, "86803", "Hepatitis C antibody (diagnostic)", "serum"),
    CatalogEntry("HIVAGAB", None, "87389", "HIV-1/HIV-2 antigen and antibody", "serum"),
    CatalogEntry("FITDX", None, "82274", "Fecal occult blood, immunoassay", "stool"),
]


@pytest.fixture(scope="module")
def tables() -> CodeTables:
    shipped = load_code_tables(REPO / "code_tables")
    have = {e.cpt for e in shipped.catalog}
    catalog = TestCatalog(
        shipped.catalog.version, [*shipped.catalog, *(e for e in EXTRA if e.cpt not in have)]
    )
    return CodeTables(
        icd10=shipped.icd10_releases(),
        catalog=catalog,
        policies=shipped.policies_for(DOS),
        bundling=shipped.bundling_for(DOS),
    )


def _order(
    cpt: str, dx: list[str], *, modifiers: tuple[str, ...] = (), born: date | None = None
) -> OrderFacts:
    return OrderFacts(
        tests=(TestFacts(1, "OBR[1]-4", cpt, "CPT", cpt, modifiers=modifiers),),
        diagnoses=tuple(DiagnosisFacts(c, f"DG1[{i}]-3", "I10") for i, c in enumerate(dx, 1)),
        date_of_service=DOS,
        provider_npi="1049382710",
        provider_name="Dana Whitfield",
        payer=MEDICARE,
        patient_birth_date=born or date(1958, 3, 14),
        patient_sex="M",
    )


def _codes(tables: CodeTables, facts: OrderFacts, *prior: PriorTest) -> list[tuple[str, str]]:
    result = verify(facts, tables, PatientHistory(tuple(prior)))
    return [(f.code.value, f.severity.value) for f in result.findings]


@pytest.mark.parametrize(
    ("cpt", "dx", "screening_code"),
    [("86803", "Z11.59", "G0472"), ("87389", "Z11.4", "G0475"), ("82274", "Z12.11", "G0328")],
)
def test_a_screening_reason_on_the_diagnostic_code_names_the_screening_code(
    tables: CodeTables, cpt: str, dx: str, screening_code: str
) -> None:
    result = verify(_order(cpt, [dx]), tables)
    (finding,) = result.findings
    assert (finding.code.value, finding.severity.value) == ("SCREENING_ON_DIAGNOSTIC", "hold")
    assert finding.reference["screening_code"] == screening_code
    assert screening_code in finding.message
    assert screening_code not in (finding.clarify or "")


def test_the_frequency_rule_counts_only_the_benefit_codes_with_the_screening_reason(
    tables: CodeTables,
) -> None:
    facts = _order("80061", ["Z13.6"])
    diagnostic = PriorTest(date(2024, 1, 1), "80061", None, ("E78.5",))
    screening = PriorTest(date(2024, 1, 1), "83718", None, ("Z13.6",))
    assert _codes(tables, facts, diagnostic) == []
    assert _codes(tables, facts, screening) == [("NECESSITY_FREQUENCY", "hold")]


def test_a_held_earlier_screening_does_not_count(tables: CodeTables) -> None:
    held = PriorTest(date(2026, 1, 5), "G0103", None, ("Z12.5",), performed=False)
    assert _codes(tables, _order("G0103", ["Z12.5"]), held) == []


def test_exclusion_and_necessity_advice_name_different_modifiers() -> None:
    plain = TestFacts(1, "OBR[1]-4", "G0103")
    exclusion, made = advice(plain, exclusion=True)
    assert "GY" in exclusion
    assert "GA" not in exclusion
    assert not made
    necessity, made = advice(plain, exclusion=False)
    assert "GA" in necessity
    assert "GZ" in necessity
    assert "GY" not in necessity
    assert not made
    with_gy = TestFacts(1, "OBR[1]-4", "G0103", modifiers=("GY",))
    assert advice(with_gy, exclusion=True)[1]
    text, made = advice(with_gy, exclusion=False)
    assert not made
    assert "GY, which answers a statutory exclusion" in text


def test_hiv_screening_eligibility_by_age_opens_with_a_risk_diagnosis(tables: CodeTables) -> None:
    old = date(1950, 1, 1)
    assert _codes(tables, _order("G0475", ["Z11.4"], born=old)) == [
        ("NECESSITY_NOT_SUPPORTED", "hold")
    ]
    assert _codes(tables, _order("G0475", ["Z11.4", "Z72.89"], born=old)) == []
