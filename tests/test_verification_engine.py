"""The pure rules, one behaviour per test, over small in-memory code tables."""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import date, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st
from verification_support import (
    COMMERCIAL,
    DOS,
    GOOD_NPI,
    MEDICARE,
    TABLES,
    order,
)

from labintake.statuses import FindingCode, OrderStatus, Severity
from labintake.verification import PatientHistory, PayerFacts, PriorTest, TestFacts, verify
from labintake.verification.engine import RULES_VERSION
from labintake.verification.findings import Finding, VerificationResult
from labintake.verification.providers import npi_check_digit, npi_problem

F = FindingCode
ICD10_SHAPE = re.compile(r"\b[A-TV-Z][0-9][0-9A-Z](?:\.[0-9A-Z]{1,4})?\b")


def found(result: VerificationResult) -> list[tuple[str, str, str]]:
    return [(f.code.value, f.severity.value, f.location) for f in result.findings]


def only(result: VerificationResult, code: FindingCode) -> Finding:
    matching = [f for f in result.findings if f.code is code]
    assert len(matching) == 1, found(result)
    return matching[0]


def test_clean_order_is_verified_and_records_table_and_rules_versions() -> None:
    result = verify(order(["LIPID", "A1C"], ["E78.5", "E11.9"]), TABLES)
    assert result.status is OrderStatus.VERIFIED
    assert result.findings == ()
    assert result.rules_version == RULES_VERSION
    assert result.table_versions == {
        "icd10cm": "icd10cm-2026-04",
        "catalog": "catalog-test",
        "coverage": "coverage-test",
        "bundling": "bundling-test",
        "dxedits": "none",
    }
    assert [(t.local_code, t.loinc, t.cpt, t.necessity) for t in result.tests] == [
        ("LIPID", "24331-1", "80061", "pass"),
        ("A1C", "4548-4", "83036", "pass"),
    ]


def test_order_without_diagnosis_is_held_at_dg1() -> None:
    result = verify(order(["CBC"], []), TABLES)
    assert result.status is OrderStatus.HELD
    assert found(result) == [("DX_MISSING", "hold", "DG1-3")]
    assert "reason" in (result.findings[0].clarify or "")


def test_a_hold_a_coder_overrode_does_not_hold_the_order_again() -> None:
    facts = order(["CBC"], [])
    held = verify(facts, TABLES)
    (hold,) = held.holds
    result = verify(replace(facts, overridden=frozenset({hold.key})), TABLES)
    assert result.status is OrderStatus.VERIFIED  # the engine's verdict is the only one
    assert [f.key for f in result.holds] == [hold.key]  # still raised, kept with its override
    other = ("DX_MISSING", "DG1-3", "another subject")
    assert verify(replace(facts, overridden=frozenset({other})), TABLES).status is OrderStatus.HELD


def test_unknown_and_icd9_codes_are_invalid() -> None:
    facts = order(["CBC"], ["E11.99X", "250.00"])
    facts = replace(
        facts, diagnoses=(facts.diagnoses[0], replace(facts.diagnoses[1], system="I9C"))
    )
    result = verify(facts, TABLES)
    assert found(result) == [
        ("DX_INVALID", "hold", "DG1[1]-3"),
        ("DX_INVALID", "hold", "DG1[2]-3"),
    ]
    assert "ICD-9" in result.findings[1].message


def test_header_code_is_not_billable_and_children_are_coder_reference_only() -> None:
    result = verify(order(["A1C"], ["E11"]), TABLES)
    finding = only(result, F.DX_NOT_BILLABLE)
    assert finding.location == "DG1[1]-3"
    assert finding.reference["kind"] == "header"
    children = [code for code, _ in finding.reference["children"]]
    assert children == ["E11.65", "E11.9"] or set(children) >= {"E11.65", "E11.9"}
    for child in children:
        assert child not in (finding.clarify or "")


def test_code_missing_its_seventh_character_is_not_billable() -> None:
    finding = only(verify(order(["CBC"], ["T36.0X1"]), TABLES), F.DX_NOT_BILLABLE)
    assert finding.reference["kind"] == "needs its 7th character"
    assert "T36.0X1A" not in (finding.clarify or "")
    assert verify(order(["CBC"], ["t360x1a"]), TABLES).status is OrderStatus.VERIFIED


def test_code_from_a_later_release_is_not_effective_on_an_earlier_date_of_service() -> None:
    early = verify(order(["A1C"], ["E11.A"], dos=date(2025, 5, 1)), TABLES)
    finding = only(early, F.DX_NOT_EFFECTIVE)
    assert finding.severity is Severity.HOLD
    assert finding.reference["valid_in"] == "icd10cm-2026-04"
    assert early.table_versions["icd10cm"] == "icd10cm-2025-04"
    later = verify(order(["A1C"], ["E11.A"], dos=date(2025, 10, 1)), TABLES)
    assert F.DX_NOT_EFFECTIVE not in {f.code for f in later.findings}


def test_excludes1_pair_is_a_warning_and_the_order_is_still_verified() -> None:
    result = verify(order(["A1C"], ["E10.9", "E11.9"]), TABLES)
    assert found(result) == [("DX_EXCLUDES1", "warn", "DG1[2]-3")]
    assert result.status is OrderStatus.VERIFIED


def test_unsupported_diagnosis_holds_medicare_order_with_abn_path_but_not_commercial() -> None:
    medicare = verify(order(["LIPID"], ["D64.9"]), TABLES)
    finding = only(medicare, F.NECESSITY_NOT_SUPPORTED)
    assert (finding.location, finding.severity) == ("OBR[1]-4", Severity.HOLD)
    assert finding.reference["policy"] == "190.23"
    # the ABN path is the coder's business: in the message, never in the office question
    assert "GA" in finding.message
    assert "GZ" in finding.message
    assert "GY" not in finding.message
    assert "ABN" not in (finding.clarify or "")
    assert "modifier" not in (finding.clarify or "")
    assert medicare.tests[0].necessity == "fail"
    commercial = verify(order(["LIPID"], ["D64.9"], payer=COMMERCIAL), TABLES)
    assert commercial.status is OrderStatus.VERIFIED
    assert commercial.tests[0].necessity == "not_applicable"


def test_never_covered_code_supports_no_test_even_under_an_inverted_policy() -> None:
    result = verify(order(["CBC"], ["Z00.00"]), TABLES)
    finding = only(result, F.NECESSITY_NOT_SUPPORTED)
    assert finding.reference["never_covered"] == ["Z00.00"]


def test_inverted_policy_covers_every_code_except_its_negative_list() -> None:
    assert verify(order(["CBC"], ["R53.83"]), TABLES).status is OrderStatus.VERIFIED
    held = verify(order(["CBC"], ["Z13.6"]), TABLES)
    assert only(held, F.NECESSITY_NOT_SUPPORTED).reference["policy"] == "190.15"


def test_abn_modifier_on_the_test_turns_necessity_into_information() -> None:
    test = TestFacts(seq=1, location="OBR[1]-4", code="LIPID", modifiers=("GA",))
    result = verify(order([test], ["D64.9"]), TABLES)
    assert found(result) == [("NECESSITY_NOT_SUPPORTED", "info", "OBR[1]-4")]
    assert result.status is OrderStatus.VERIFIED


def _prior(days_before: int, cpt: str, dx: tuple[str, ...] = ()) -> PriorTest:
    return PriorTest(DOS - timedelta(days=days_before), cpt, None, dx, f"#{days_before}")


def test_frequency_limit_counts_distinct_earlier_dates_inside_the_window() -> None:
    facts = order(["GLU"], ["E11.9"])
    at_limit = PatientHistory((_prior(30, "82947"), _prior(90, "82947"), _prior(180, "82947")))
    assert verify(facts, TABLES, at_limit).status is OrderStatus.VERIFIED
    over = PatientHistory((*at_limit.tests, _prior(300, "82947"), _prior(301, "82947")))
    finding = only(verify(facts, TABLES, over), F.NECESSITY_FREQUENCY)
    assert finding.reference["prior_dates"][-1] == (DOS - timedelta(days=30)).isoformat()
    outside = PatientHistory((*at_limit.tests, _prior(365, "82947"), _prior(400, "82947")))
    assert verify(facts, TABLES, outside).status is OrderStatus.VERIFIED


def test_frequency_is_a_medicare_rule() -> None:
    history = PatientHistory((_prior(20, "83036"),))
    assert only(verify(order(["A1C"], ["E11.9"]), TABLES, history), F.NECESSITY_FREQUENCY)
    commercial = verify(order(["A1C"], ["E11.9"], payer=COMMERCIAL), TABLES, history)
    assert commercial.status is OrderStatus.VERIFIED


def test_screening_lipids_limit_counts_only_earlier_screenings() -> None:
    facts = order(["LIPID"], ["Z13.6"])
    assert verify(facts, TABLES).status is OrderStatus.VERIFIED
    diagnostic_before = PatientHistory((_prior(400, "80061", ("E78.5",)),))
    assert verify(facts, TABLES, diagnostic_before).status is OrderStatus.VERIFIED
    screening_before = PatientHistory((_prior(1000, "80061", ("Z13.6",)),))
    only(verify(facts, TABLES, screening_before), F.NECESSITY_FREQUENCY)


def test_screening_diagnosis_on_diagnostic_psa_holds_and_names_screening_code() -> None:
    result = verify(order(["PSA"], ["Z12.5"]), TABLES)
    finding = only(result, F.SCREENING_ON_DIAGNOSTIC)
    assert (finding.severity, finding.location) == (Severity.HOLD, "OBR[1]-4")
    assert "G0103" in finding.message
    assert "G0103" not in (finding.clarify or "")
    assert F.NECESSITY_NOT_SUPPORTED not in {f.code for f in result.findings}


def test_screening_diagnosis_beside_a_supporting_one_is_only_a_warning() -> None:
    result = verify(order(["PSA"], ["Z12.5", "R97.20"]), TABLES)
    assert found(result) == [("SCREENING_ON_DIAGNOSTIC", "warn", "OBR[1]-4")]


def test_unknown_test_code_holds_and_mapped_sender_code_resolves() -> None:
    assert found(verify(order(["NOPE"], ["E11.9"]), TABLES)) == [
        ("TEST_UNKNOWN", "hold", "OBR[1]-4")
    ]
    mapped = replace(order(["LAB0042"], ["E11.9"]), interface_codes={"LAB0042": "A1C"})
    result = verify(mapped, TABLES)
    assert result.status is OrderStatus.VERIFIED
    assert result.tests[0].cpt == "83036"


def test_loinc_and_cpt_naming_different_tests_is_a_mismatch() -> None:
    mismatch = TestFacts(1, "OBR[1]-4", "4548-4", "LN", "A1C", "84443", "CPT")
    result = verify(order([mismatch], ["E11.9"]), TABLES)
    assert found(result) == [("TEST_CODE_MISMATCH", "hold", "OBR[1]-4")]
    assert result.tests[0].cpt is None
    agreeing = TestFacts(1, "OBR[1]-4", "4548-4", "LN", "A1C", "83036", "C4")
    assert verify(order([agreeing], ["E11.9"]), TABLES).status is OrderStatus.VERIFIED


def test_panel_with_its_own_component_flags_the_component() -> None:
    result = verify(order(["LIPID", "CHOL"], ["E78.5"]), TABLES)
    assert found(result) == [("BUNDLED_COMPONENT", "hold", "OBR[2]-4")]


def test_overlapping_panels_flag_the_smaller_panel() -> None:
    result = verify(order(["BMP", "CMP"], ["E11.9"]), TABLES)
    assert found(result) == [("BUNDLED_COMPONENT", "hold", "OBR[1]-4")]
    hepatic = verify(order(["CMP", "HEP"], ["E11.9"]), TABLES)
    finding = only(hepatic, F.BUNDLED_COMPONENT)
    assert (finding.location, finding.reference["not_in_panel"]) == ("OBR[2]-4", ["82248"])


def test_ncci_pair_severity_follows_the_modifier_indicator() -> None:
    never = verify(order(["CBC", "CBCD"], ["D64.9"]), TABLES)
    assert found(never) == [("BUNDLED_COMPONENT", "hold", "OBR[1]-4")]
    allowed = verify(order(["LIPID", "LDLD"], ["E78.5"]), TABLES)
    assert found(allowed) == [("BUNDLED_COMPONENT", "warn", "OBR[2]-4")]
    with_59 = TestFacts(2, "OBR[2]-4", "LDLD", modifiers=("59",))
    assert found(verify(order(["LIPID", with_59], ["E78.5"]), TABLES)) == [
        ("BUNDLED_COMPONENT", "info", "OBR[2]-4")
    ]


def test_units_over_the_mue_limit_hold() -> None:
    many = TestFacts(1, "OBR[1]-4", "TSH", units=3)
    result = verify(order([many], ["E11.9"], payer=COMMERCIAL), TABLES)
    assert found(result) == [("UNITS_OVER_LIMIT", "hold", "OBR[1]-4")]
    assert only(result, F.UNITS_OVER_LIMIT).reference == {"units": 3, "limit": 1, "mai": 1}


def test_missing_provider_or_npi_holds() -> None:
    assert found(verify(order(["CBC"], ["D64.9"], npi="", provider=""), TABLES)) == [
        ("PROVIDER_MISSING", "hold", "ORC-12")
    ]
    named = verify(order(["CBC"], ["D64.9"], npi=""), TABLES)
    assert "Ana Reyes" in only(named, F.PROVIDER_MISSING).message


def test_npi_failing_its_check_digit_holds() -> None:
    result = verify(order(["CBC"], ["D64.9"], npi="1234567890"), TABLES)
    assert found(result) == [("PROVIDER_NPI_INVALID", "hold", "ORC-12")]


def test_npi_check_digit_uses_the_80840_prefix() -> None:
    assert npi_problem(GOOD_NPI) is None
    assert npi_check_digit("123456789") == 3
    assert npi_problem("1245319599") is None  # a published example NPI
    assert npi_problem("12345") is not None


@given(st.text(alphabet="0123456789", min_size=8, max_size=8), st.sampled_from("12"))
def test_exactly_one_check_digit_makes_an_npi_valid(body: str, first: str) -> None:
    valid = [d for d in "0123456789" if npi_problem(first + body + d) is None]
    assert valid == [str(npi_check_digit(first + body))]


def test_same_test_same_day_in_history_is_a_duplicate() -> None:
    history = PatientHistory((PriorTest(DOS, "85027", "CBC", ("D64.9",), "P-100"),))
    result = verify(order(["CBC"], ["D64.9"]), TABLES, history)
    finding = only(result, F.DUPLICATE_ORDER)
    assert finding.location == "OBR[1]-4"
    assert "P-100" in finding.message
    next_day = PatientHistory((replace(history.tests[0], date_of_service=DOS - timedelta(1)),))
    assert verify(order(["CBC"], ["D64.9"]), TABLES, next_day).status is OrderStatus.VERIFIED


def test_same_test_twice_in_one_order_is_a_duplicate_unless_marked_repeat() -> None:
    twice = verify(order(["CBC", "CBC"], ["D64.9"]), TABLES)
    assert found(twice) == [("DUPLICATE_ORDER", "hold", "OBR[2]-4")]
    repeat = TestFacts(2, "OBR[2]-4", "CBC", modifiers=("91",))
    assert found(verify(order(["CBC", repeat], ["D64.9"]), TABLES)) == [
        ("DUPLICATE_ORDER", "info", "OBR[2]-4")
    ]


def test_signature_missing_is_soft() -> None:
    result = verify(order(["CBC"], ["D64.9"], signature=False), TABLES)
    assert found(result) == [("SIGNATURE_MISSING", "info", "ORC-12")]
    assert result.status is OrderStatus.VERIFIED
    assert verify(order(["CBC"], ["D64.9"], signature=None), TABLES).findings == ()


def test_every_hold_carries_a_question_for_the_office() -> None:
    facts = order(["PSA", "NOPE", "CMP", "BMP"], ["E11", "Z12.5", "Q99.99"], npi="1")
    result = verify(facts, TABLES)
    assert result.holds
    for finding in result.holds:
        assert finding.clarify, finding.code


@pytest.mark.parametrize("payer", [MEDICARE, COMMERCIAL])
def test_no_finding_proposes_a_diagnosis_to_the_office(payer: PayerFacts) -> None:
    facts = order(["LIPID", "PSA"], ["E11", "Z00.00", "Z12.5", "T36.0X1"], payer=payer)
    result = verify(facts, TABLES)
    sent = {d.code for d in facts.diagnoses}
    for finding in result.findings:
        codes = set(
            re.findall(r"\b[A-TV-Z][0-9][0-9A-Z](?:\.[0-9A-Z]{1,4})?\b", finding.clarify or "")
        )
        assert codes <= sent, (finding.code, codes - sent)
        assert not re.search(r"pay|reimburs|denied|denial|\$", finding.clarify or "", re.I)


_junk = st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-^ x*", max_size=12)


@given(
    dx=st.lists(_junk, max_size=4),
    tests=st.lists(st.tuples(_junk, st.sampled_from(["", "LN", "CPT", "L", "99zz"])), max_size=4),
    units=st.integers(min_value=-3, max_value=50),
    npi=_junk,
    modifiers=st.lists(st.sampled_from(["GA", "GZ", "59", "91", "QW", ""]), max_size=3),
)
def test_any_order_gets_a_result_and_every_hold_a_question(
    dx: list[str],
    tests: list[tuple[str, str]],
    units: int,
    npi: str,
    modifiers: list[str],
) -> None:
    built = [
        TestFacts(i, f"OBR[{i}]-4", code, system, units=units, modifiers=tuple(modifiers))
        for i, (code, system) in enumerate(tests, start=1)
    ]
    result = verify(order(built, dx, npi=npi), TABLES)
    assert result.status is (OrderStatus.HELD if result.holds else OrderStatus.VERIFIED)
    assert len(result.tests) == len(built)
    for finding in result.findings:
        assert finding.message
        assert finding.location
        if finding.is_hold:
            assert finding.clarify


def test_facts_from_a_read_order_keep_locations_payer_and_sender_codes() -> None:
    from labintake.domain import (
        CodedValue,
        Diagnosis,
        Insurance,
        Office,
        OrderRequest,
        Patient,
        Provider,
        TestRequest,
    )
    from labintake.verification import facts_from_request

    request = OrderRequest(
        group_index=2,
        order_control="NW",
        placer_order_number="NS1002",
        filler_order_number="",
        patient=Patient(mrn="NS7781234", birth_date=date(1958, 3, 4), sex="F"),
        insurances=(Insurance("MCRB", "00431", "Medicare Part B"),),
        provider=Provider(
            npi=GOOD_NPI, family_name="Okafor", given_name="Chidi", location="ORC[2]-12"
        ),
        office=Office(name="Northside Internal Medicine"),
        tests=(TestRequest(CodedValue("LAB0042", "HBA1C", "EPC"), "OBR[3]-4", units=1),),
        diagnoses=(Diagnosis("E11.65", system="I10", location="DG1[1]-3"),),
        date_of_service=None,
        signature_on_file=False,
    )
    facts = facts_from_request(
        request,
        date_of_service=DOS,
        sending_facility="NORTHSIDE",
        interface="northside-epic",
        interface_codes={"LAB0042": "A1C"},
    )
    assert facts.date_of_service == DOS
    assert facts.patient_key == "NORTHSIDE|NS7781234"
    assert facts.payer == PayerFacts("00431", "Medicare Part B", "MCRB")
    result = verify(facts, TABLES)
    assert result.tests[0].cpt == "83036"
    assert found(result) == [("SIGNATURE_MISSING", "info", "ORC[2]-12")]
