"""Small in-memory code tables and order builders for the verification unit tests.

Built through the code tables' own constructors, so the tests exercise the real lookups. The
diagnosis descriptions are short paraphrases; the coverage lists are tiny illustrative subsets.
"""

from __future__ import annotations

from datetime import date

from labintake.codes.bundling import Bundling, MueLimit, PtpEdit
from labintake.codes.catalog import CatalogEntry, TestCatalog
from labintake.codes.icd10 import Icd10Entry, Icd10Release
from labintake.codes.policies import (
    CodeSet,
    CoveragePolicies,
    FrequencyLimit,
    NcdPolicy,
    PayerRules,
)
from labintake.codes.screening import ScreeningBenefit, ScreeningFrequency
from labintake.codes.tables import CodeTables
from labintake.verification.facts import DiagnosisFacts, OrderFacts, PayerFacts, TestFacts

DOS = date(2026, 6, 15)
GOOD_NPI = "1234567893"
MEDICARE = PayerFacts(company_id="MCR", company_name="MEDICARE PART B", plan_id="MCRB")
COMMERCIAL = PayerFacts(company_id="ACME", company_name="ACME HEALTH PLAN", plan_id="PPO")


def _e(
    code: str,
    description: str,
    *,
    billable: bool = True,
    header: bool = False,
    seventh: bool = False,
    excludes1: tuple[str, ...] = (),
    parent: str | None = None,
) -> Icd10Entry:
    if parent is None and "." in code:
        parent = code[:-1].rstrip(".")
    return Icd10Entry(code, description, billable, header, seventh, excludes1, parent)


_COMMON = [
    _e("E10", "type 1 diabetes", billable=False, header=True, excludes1=("E11.*",)),
    _e("E10.9", "type 1 diabetes without complications"),
    _e("E11", "type 2 diabetes", billable=False, header=True, excludes1=("E10.*",)),
    _e("E11.6", "type 2 diabetes with other complications", billable=False, header=True),
    _e("E11.65", "type 2 diabetes with hyperglycemia"),
    _e("E11.9", "type 2 diabetes without complications"),
    _e("E78", "lipid disorders", billable=False, header=True),
    _e("E78.5", "hyperlipidemia, unspecified"),
    _e("I10", "essential hypertension"),
    _e("D64", "other anemias", billable=False, header=True),
    _e("D64.9", "anemia, unspecified"),
    _e("R53", "malaise and fatigue", billable=False, header=True),
    _e("R53.83", "other fatigue", parent="R53"),
    _e("R97", "abnormal tumor markers", billable=False, header=True),
    _e("R97.2", "elevated PSA", billable=False, header=True),
    _e("R97.20", "elevated PSA, unspecified"),
    _e("Z00", "general examination", billable=False, header=True),
    _e("Z00.0", "general adult examination", billable=False, header=True),
    _e("Z00.00", "general adult exam without abnormal findings"),
    _e("Z12", "screening for malignant neoplasms", billable=False, header=True),
    _e("Z12.5", "screening for prostate cancer"),
    _e("Z13", "screening for other diseases", billable=False, header=True),
    _e("Z13.6", "screening for cardiovascular disorders"),
    _e("T36", "poisoning by systemic antibiotics", billable=False, header=True, seventh=True),
    _e("T36.0", "poisoning by penicillins", billable=False, header=True, seventh=True),
    _e("T36.0X1", "penicillin poisoning, accidental", billable=False, header=True, seventh=True),
    _e("T36.0X1A", "penicillin poisoning, accidental, initial encounter", seventh=True),
]
RELEASE_2025 = Icd10Release.from_entries(
    "icd10cm-2025-04", date(2025, 4, 1), date(2025, 9, 30), _COMMON
)
RELEASE_2026 = Icd10Release.from_entries(
    "icd10cm-2026-04",
    date(2025, 10, 1),
    None,
    [*_COMMON, _e("E11.A", "type 2 diabetes in remission")],
)

CATALOG = TestCatalog(
    "catalog-test",
    [
        CatalogEntry("CBC", "58410-2", "85027", "blood count", "EDTA", ncd="190.15"),
        CatalogEntry(
            "CBCD", "57021-8", "85025", "blood count with differential", "EDTA", ncd="190.15"
        ),
        CatalogEntry(
            "CMP",
            "24323-8",
            "80053",
            "comprehensive metabolic panel",
            "serum",
            components=(
                "82040",
                "82247",
                "82310",
                "82374",
                "82435",
                "82565",
                "82947",
                "84075",
                "84132",
                "84155",
                "84295",
                "84450",
                "84460",
                "84520",
            ),
        ),
        CatalogEntry(
            "BMP",
            "24321-2",
            "80048",
            "basic metabolic panel",
            "serum",
            components=("82310", "82374", "82435", "82565", "82947", "84132", "84295", "84520"),
        ),
        CatalogEntry(
            "HEP",
            "24325-3",
            "80076",
            "hepatic function panel",
            "serum",
            components=("82040", "82247", "82248", "84075", "84155", "84450", "84460"),
        ),
        CatalogEntry(
            "LIPID",
            "24331-1",
            "80061",
            "lipid panel",
            "serum",
            components=("82465", "83718", "84478"),
            ncd="190.23",
        ),
        CatalogEntry("CHOL", "2093-3", "82465", "total cholesterol", "serum", ncd="190.23"),
        CatalogEntry("LDLD", "18262-6", "83721", "direct LDL cholesterol", "serum", ncd="190.23"),
        CatalogEntry("GLU", "2345-7", "82947", "glucose", "serum", ncd="190.20"),
        CatalogEntry("A1C", "4548-4", "83036", "hemoglobin A1c", "EDTA", ncd="190.21"),
        CatalogEntry(
            "PSA",
            "2857-1",
            "84153",
            "prostate specific antigen",
            "serum",
            ncd="190.31",
            screening_cpt="G0103",
        ),
        CatalogEntry(
            "TSH", "3016-3", "84443", "thyroid stimulating hormone", "serum", ncd="190.22"
        ),
    ],
)

_LIPID = NcdPolicy(
    ncd="190.23",
    title="lipid testing",
    cpts=("80061", "82465", "83718", "83721", "84478"),
    covered=CodeSet.parse(["E78.*", "E11.*", "I10"]),
    not_covered=CodeSet(),
    inverted=False,
    frequency=(),
    illustrative=True,
)
_CBC = NcdPolicy(
    ncd="190.15",
    title="blood counts",
    cpts=("85025", "85027"),
    covered=CodeSet(),
    not_covered=CodeSet.parse(["Z13.6"]),
    inverted=True,
    frequency=(),
    illustrative=True,
)
_GLUCOSE = NcdPolicy(
    ncd="190.20",
    title="blood glucose",
    cpts=("82947",),
    covered=CodeSet.parse(["E11.*", "E10.*", "R53.83"]),
    not_covered=CodeSet(),
    inverted=False,
    frequency=(FrequencyLimit(("82947",), 4, 365, None, "stable patients: four a year"),),
    illustrative=True,
)
_A1C = NcdPolicy(
    ncd="190.21",
    title="glycated hemoglobin",
    cpts=("83036",),
    covered=CodeSet.parse(["E11.*", "E10.*"]),
    not_covered=CodeSet(),
    inverted=False,
    frequency=(FrequencyLimit(("83036",), 1, 90, None, "once every three months"),),
    illustrative=True,
)
_PSA = NcdPolicy(
    ncd="190.31",
    title="prostate specific antigen",
    cpts=("84153",),
    covered=CodeSet.parse(["R97.2*"]),
    not_covered=CodeSet(),
    inverted=False,
    frequency=(),
    illustrative=True,
)
POLICIES = CoveragePolicies(
    version="coverage-test",
    never_covered=CodeSet.parse(["Z00.00", "Z00.01"]),
    screening=(
        ScreeningBenefit(
            name="prostate",
            title="screening PSA",
            dx=CodeSet.parse(["Z12.5"]),
            screening_cpts=("G0103",),
            dedicated=True,
            diagnostic_cpts={"84153": "G0103"},
        ),
        ScreeningBenefit(
            name="cardiovascular",
            title="screening lipids",
            dx=CodeSet.parse(["Z13.6"]),
            screening_cpts=("80061",),
            frequency=(ScreeningFrequency(1, "once in 5 years", full_months=59),),
        ),
    ),
    ncds=(_LIPID, _CBC, _GLUCOSE, _A1C, _PSA),
    payers=PayerRules(company_ids=frozenset({"MCR"})),
)
BUNDLING = Bundling(
    "bundling-test",
    edits=[
        PtpEdit("80061", "83721", "1", date(2020, 1, 1)),
        PtpEdit("85025", "85027", "0", date(2020, 1, 1)),
    ],
    mue=[MueLimit("85025", 1, 3), MueLimit("82947", 2, 3), MueLimit("84443", 1, 1)],
    panels={"80061": ("82465", "83718", "84478"), "80048": ("82310", "82374")},
)
TABLES = CodeTables(
    icd10=[RELEASE_2025, RELEASE_2026], catalog=CATALOG, policies=POLICIES, bundling=BUNDLING
)


def order(
    tests: list[str] | list[TestFacts],
    dx: list[str] | None = None,
    *,
    payer: PayerFacts = MEDICARE,
    npi: str = GOOD_NPI,
    provider: str = "Ana Reyes",
    dos: date = DOS,
    signature: bool | None = None,
    interface: str = "",
) -> OrderFacts:
    """An order of local test codes (or ready TestFacts) and diagnosis codes."""
    built = [
        t if isinstance(t, TestFacts) else TestFacts(seq=i, location=f"OBR[{i}]-4", code=t, text=t)
        for i, t in enumerate(tests, start=1)
    ]
    return OrderFacts(
        tests=tuple(built),
        diagnoses=tuple(
            DiagnosisFacts(code=c, location=f"DG1[{i}]-3") for i, c in enumerate(dx or [], 1)
        ),
        date_of_service=dos,
        provider_npi=npi,
        provider_name=provider,
        payer=payer,
        patient_key="CLINIC|MRN1",
        signature_on_file=signature,
        interface=interface,
    )
