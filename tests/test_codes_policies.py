"""Coverage policies: code sets, NCD support, screening rules, payers, the shipped subset."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from labintake.codes.policies import CodeSet, CoveragePolicies, NcdPolicy, PayerRules
from labintake.codes.tables import CodeTables, load_code_tables

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def tables() -> CodeTables:
    return load_code_tables(REPO / "code_tables")


@pytest.fixture(scope="module")
def policies(tables: CodeTables) -> CoveragePolicies:
    return tables.policies_for(date(2026, 5, 1))


def test_codeset_matches_exact_codes_only_exactly() -> None:
    codes = CodeSet.parse(["E11.9", "i25.10"])
    assert codes.matches("E11.9")
    assert codes.matches("e119")
    assert codes.matches("I25.10")
    assert not codes.matches("E11.65")
    assert not codes.matches("I25.1")


@pytest.mark.parametrize("pattern", ["E11.*", "E11*", "E11.-", "E11-"])
def test_codeset_prefix_wildcards_cover_the_code_and_everything_below(pattern: str) -> None:
    codes = CodeSet.parse([pattern])
    assert codes.matches("E11")
    assert codes.matches("E11.9")
    assert codes.matches("E11.3211")
    assert not codes.matches("E10.9")
    assert not codes.matches("E1")


def test_codeset_ranges_include_their_bounds_and_codes_below_the_upper_bound() -> None:
    codes = CodeSet.parse(["E78.00-E78.5", "E08-E13"])
    for inside in ("E78.00", "E78.01", "E78.2", "E78.49", "E78.5", "E78.51", "E08.9", "E13.9"):
        assert codes.matches(inside), inside
    for outside in ("E78.6", "E78", "E07.9", "E14", "E16.2"):
        assert not codes.matches(outside), outside


def test_codeset_refuses_patterns_that_are_not_codes() -> None:
    with pytest.raises(ValueError, match="not an ICD-10-CM code"):
        CodeSet.parse(["diabetes"])
    with pytest.raises(ValueError, match="backwards"):
        CodeSet.parse(["E13-E08"])


def test_codeset_union_and_patterns_keep_what_was_written() -> None:
    merged = CodeSet.parse(["E11.*"]).union(CodeSet.parse(["E78.00-E78.5"]))
    assert merged.patterns == ("E11.*", "E78.00-E78.5")
    assert merged.matches("E11.9")
    assert merged.matches("E78.1")
    assert len(merged) == 2
    assert bool(merged)
    assert not bool(CodeSet())


def test_inverted_policy_covers_everything_but_its_negative_list() -> None:
    policy = NcdPolicy(
        "190.15",
        "Blood counts",
        ("85025",),
        CodeSet(),
        CodeSet.parse(["Z02.*"]),
        True,
        (),
        True,
    )
    assert policy.supports("D64.9")
    assert policy.supports("R50.9")
    assert not policy.supports("Z02.1")


def test_regular_policy_supports_only_covered_diagnoses() -> None:
    policy = NcdPolicy(
        "190.23", "Lipids", ("80061",), CodeSet.parse(["E78.5"]), CodeSet(), False, (), True
    )
    assert policy.supports("E78.5")
    assert not policy.supports("R51.9")


def test_shipped_policies_each_name_their_source_and_say_how_complete_they_are(
    policies: CoveragePolicies,
) -> None:
    numbers = {p.ncd for p in policies.ncds}
    assert {
        "190.15",
        "190.16",
        "190.17",
        "190.18",
        "190.20",
        "190.21",
        "190.22",
    } <= numbers
    transcribed = {f"190.{n}" for n in range(23, 35)}
    assert transcribed <= numbers
    assert all(p.source for p in policies.ncds + policies.lcds)
    for policy in policies.ncds:
        if policy.ncd in transcribed:
            # Transcribed from the public texts, none of them whole: each says so.
            assert not policy.illustrative
            assert not policy.complete, policy.ncd
            assert policy.notes, policy.ncd
        else:
            assert policy.illustrative


@pytest.mark.parametrize(
    ("cpt", "dx", "supported"),
    [
        ("80061", "E78.5", True),
        ("80061", "E78.00", True),
        ("80061", "I25.10", True),
        ("80061", "R51.9", False),
        ("83036", "E11.65", True),
        ("83036", "E11.9", True),
        ("84443", "E03.9", True),
        ("84443", "E05.90", True),
        ("85025", "D64.9", True),
        ("85025", "D69.6", True),
        ("85025", "R50.9", True),
        ("85610", "Z79.01", True),
        ("85610", "R79.1", True),
        ("85610", "E78.5", False),
        ("84153", "R97.20", True),
        ("83540", "D50.9", True),
        ("85730", "D68.9", True),
        ("82947", "E11.9", True),
    ],
)
def test_shipped_policies_support_the_example_diagnoses(
    policies: CoveragePolicies, cpt: str, dx: str, supported: bool
) -> None:
    found = policies.for_cpt(cpt)
    assert found, f"no policy for {cpt}"
    assert any(p.supports(dx) for p in found) is supported


def test_blood_counts_policy_is_inverted(policies: CoveragePolicies) -> None:
    (policy,) = policies.for_cpt("85027")
    assert policy.ncd == "190.15"
    assert policy.inverted


def test_general_exams_are_never_covered(policies: CoveragePolicies) -> None:
    for code in ("R99", "Z00.00", "Z00.01"):
        assert policies.never_covered.matches(code)
    assert not policies.never_covered.matches("E11.9")


def test_frequency_limits_carry_their_verify_marks(policies: CoveragePolicies) -> None:
    glucose = policies.ncd("190.20")
    hba1c = policies.ncd("190.21")
    lipids = policies.ncd("190.23")
    thyroid = policies.ncd("190.22")
    assert glucose
    assert hba1c
    assert lipids
    assert thyroid
    assert (glucose.frequency[0].max_count, glucose.frequency[0].period_days) == (4, 365)
    assert not glucose.frequency[0].verify
    assert hba1c.frequency[0].period_days == 90
    assert hba1c.frequency[0].verify
    assert lipids.frequency[0].max_count == 1
    assert lipids.frequency[0].verify
    assert thyroid.frequency[0].max_count == 2
    assert thyroid.frequency[0].verify


def test_screening_benefits_route_psa_to_g0103_and_allow_screening_lipids(
    policies: CoveragePolicies,
) -> None:
    (psa,) = policies.screening_for("Z12.5")
    assert psa.dedicated
    assert psa.screening_cpts == ("G0103",)
    assert psa.diagnostic_cpts["84153"] == "G0103"
    assert {"84152", "84154"} <= set(psa.outside_cpts)  # free/complexed PSA are never G0103
    assert (psa.eligibility.sex, psa.eligibility.min_age) == ("M", 50)
    assert psa.eligibility.age_from == "day_after_birthday"
    assert psa.frequency[0].full_months == 11
    (lipids,) = policies.screening_for("Z13.6")
    assert not lipids.dedicated
    assert "80061" in lipids.screening_cpts
    assert lipids.frequency[0].full_months == 59
    (diabetes,) = policies.screening_for("Z13.1")
    assert {"83036", "82947"} <= set(diabetes.screening_cpts)
    assert (diabetes.frequency[0].max_count, diabetes.frequency[0].rolling_months) == (2, 12)


def test_every_screening_code_has_a_catalog_entry_and_a_source(tables: CodeTables) -> None:
    policies = tables.policies_for(date(2026, 5, 12))
    names = {b.name for b in policies.screening}
    assert names >= {"cardiovascular", "diabetes", "prostate", "colorectal-fobt", "hiv"}
    for benefit in policies.screening:
        assert benefit.source, benefit.name
        assert benefit.frequency, benefit.name
        if benefit.dedicated:
            assert any(tables.catalog.by_cpt(c) for c in benefit.screening_cpts), benefit.name


def test_ncd_frequency_guidance_is_diagnosis_aware(policies: CoveragePolicies) -> None:
    hba1c = policies.ncd("190.21")
    lipids = policies.ncd("190.23")
    assert hba1c is not None
    assert lipids is not None
    (limit,) = hba1c.frequency
    assert not limit.statutory
    assert limit.exempt_dx is not None
    assert limit.exempt_dx.matches("E11.65")
    assert limit.exempt_dx.matches("O24.410")
    assert not limit.exempt_dx.matches("E11.9")
    assert lipids.frequency[0].counted == ("80061",)


def test_local_policies_cover_vitamin_d_and_b12(policies: CoveragePolicies) -> None:
    (vitamin_d,) = policies.lcd_for_cpt("82306")
    (b12,) = policies.lcd_for_cpt("82607")
    assert vitamin_d.kind == "LCD"
    assert vitamin_d.supports("E55.9")
    assert b12.supports("D51.0")
    assert policies.for_cpt("82306") == []


@pytest.mark.parametrize(
    ("company_id", "company_name", "plan_id", "applies"),
    [
        ("", "MEDICARE PART B", "", False),  # a name alone says nothing
        ("", "Medicare Supplement Plan G", "", False),
        ("MCR^^^PAYER", "", "", True),
        ("00431^^^CMS", "Medicare Part B", "MCRB", True),
        ("MAPLAN", "Humana Medicare Advantage", "HMOMA", True),
        ("MEDIGAP", "Medicare Supplement Plan G", "G", False),
        ("60054", "Blue Cross Blue Shield of Illinois", "BCBS-PPO", False),
        ("", "", "MEDICARE-B", True),
        ("AETNA01", "Aetna Health", "PPO", False),
        ("", "", "", False),
    ],
)
def test_medicare_rules_apply_to_the_configured_payers(
    policies: CoveragePolicies, company_id: str, company_name: str, plan_id: str, applies: bool
) -> None:
    assert policies.medicare_applies(company_id, company_name, plan_id) is applies


def test_payer_exclusions_win_over_name_matches() -> None:
    rules = PayerRules(name_contains=("MEDICARE",), name_excludes=("SUPPLEMENT",))
    assert not rules.applies("", "Medicare Supplement Plan G", "")
    assert rules.applies("", "Medicare", "")


@pytest.mark.parametrize(
    ("frequency", "problem"),
    [
        ({"max_count": 1, "full_months": 11, "rolling_months": 12}, "exactly one of"),
        ({"max_count": 0, "full_months": 11}, "max_count"),
        ({"max_count": 1}, "exactly one of"),
    ],
)
def test_screening_frequency_must_name_exactly_one_window(
    frequency: dict[str, int], problem: str
) -> None:
    from labintake.codes.screening import benefit_from_toml

    data = {
        "name": "x",
        "title": "x",
        "dx": ["Z12.5"],
        "screening_cpts": ["G0103"],
        "frequency": [frequency],
    }
    with pytest.raises(ValueError, match=problem):
        benefit_from_toml(data, "screening.toml benefit[0]")


def test_payer_table_refuses_an_unknown_type_and_a_row_matching_nothing() -> None:
    from labintake.codes.coverage import read_payers
    from labintake.errors import CodeTableError

    with pytest.raises(CodeTableError, match="type 'medicare-b'"):
        read_payers({"payer": [{"type": "medicare-b", "company_ids": ["CMS"]}]}, "payers.toml")
    with pytest.raises(CodeTableError, match="give company_ids"):
        read_payers({"payer": [{"type": "medicare"}]}, "payers.toml")


def test_a_plan_id_entry_is_more_specific_than_the_company_entry() -> None:
    from labintake.codes.policies import PayerPlan

    rules = PayerRules(
        plans=(
            PayerPlan("commercial", company_ids=frozenset({"ACME01"})),
            PayerPlan(
                "medicare-advantage",
                company_ids=frozenset({"ACME01"}),
                plan_ids=frozenset({"MAPD"}),
            ),
        )
    )
    assert rules.applies("ACME01^^^ACME", "Acme", "MAPD^Acme Medicare")
    assert not rules.applies("ACME01", "Acme Medicare Plan", "PPO")
