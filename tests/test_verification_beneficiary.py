"""The beneficiary key: the MBI when the order carries one, else sender and MRN."""

from __future__ import annotations

from datetime import date

import pytest

from labintake.domain import (
    CodedValue,
    Insurance,
    Office,
    OrderRequest,
    Patient,
    Provider,
)
from labintake.domain import (
    TestRequest as RequestedTest,
)
from labintake.hl7.reader import read_orders
from labintake.verification.beneficiary import is_mbi, mbi_from, patient_key
from labintake.verification.facts import facts_from_request

MBI = "1EG4TE5MK73"  # the form CMS uses in its own examples


@pytest.mark.parametrize(
    ("value", "valid"),
    [
        ("1EG4TE5MK73", True),
        ("1EG4-TE5-MK73", True),  # shown with dashes, stored without
        ("0EG4TE5MK73", False),  # position 1 is 1-9
        ("1SG4TE5MK73", False),  # S is never used
        ("1EG4TE5MK7", False),  # 10 characters
        ("123456789A", False),  # an old HICN shape
    ],
)
def test_mbi_form(value: str, valid: bool) -> None:
    assert is_mbi(value) is valid


def test_mbi_is_taken_from_pid3_with_type_mc_or_a_cms_authority() -> None:
    assert mbi_from([f"{MBI}^^^CMS^MC"]) == MBI
    assert mbi_from([f"{MBI}^^^2.16.840.1.113883.4.927^"]) == MBI
    assert mbi_from(["445566^^^NORTHSIDE^MR", f"{MBI}^^^MCR^MB"]) == MBI


def test_a_member_id_counts_only_when_it_has_the_mbi_form() -> None:
    assert mbi_from(["W123456789^^^AETNA^MB"]) == ""
    assert mbi_from([], ["W123456789", MBI]) == MBI
    assert mbi_from(["445566^^^NORTHSIDE^MR"]) == ""


def test_patient_key_prefers_the_mbi_over_sender_and_mrn() -> None:
    assert patient_key([f"{MBI}^^^CMS^MC"], "NORTHSIDE", "445566") == f"MBI|{MBI}"
    assert patient_key(["445566^^^NORTHSIDE^MR"], "NORTHSIDE", "445566") == "NORTHSIDE|445566"


def test_facts_of_a_request_carry_every_insurance_and_the_mbi_key() -> None:
    request = OrderRequest(
        group_index=1,
        order_control="NW",
        placer_order_number="P1",
        filler_order_number="",
        patient=Patient(identifiers=("445566^^^NORTHSIDE^MR", f"{MBI}^^^CMS^MC"), mrn="445566"),
        insurances=(
            Insurance(plan_id="PPO", company_id="BCBS01", company_name="Blue Cross"),
            Insurance(plan_id="MCRB", company_id="CMS", company_name="Medicare Part B"),
        ),
        provider=Provider(),
        office=Office(),
        tests=(RequestedTest(service=CodedValue("84443"), location="OBR[1]-4"),),
        diagnoses=(),
        date_of_service=date(2026, 5, 12),
    )
    facts = facts_from_request(request, date_of_service=date(2026, 5, 12), sending_facility="NS")
    assert facts.payer.company_id == "BCBS01"
    assert [p.company_id for p in facts.all_payers()] == ["BCBS01", "CMS"]
    assert facts.patient_key == f"MBI|{MBI}"


def test_reader_keeps_every_in1_and_takes_the_mbi_from_in1_36() -> None:
    in1_36 = "|" * 32 + MBI  # IN1-36 policy number
    text = "\r".join(
        [
            "MSH|^~\\&|PRAXIS|PRAIRIEFM|LABINTAKE|REFLAB|20260512083000||ORM^O01|C1|P|2.5.1",
            "PID|1||PF1^^^PRAIRIEFM^MR||Doe^Ann||19580211|F",
            "IN1|1|PPO|60054^^^BCBSIL|Blue Cross Blue Shield of Illinois",
            f"IN1|2|MCRB|CMS|Medicare Part B{in1_36}",
            "ORC|NW|P1|||||^^^20260512^^R||20260512082500|||1987654328^Whitfield^Dana^^^^MD^^NPI",
            "OBR|1|P1||84153^PSA^CPT|||20260512081500",
            "DG1|1|I10|Z12.5^Screening^I10",
        ]
    )
    (request,) = read_orders(text).orders
    assert [i.company_id for i in request.insurances] == ["60054", "CMS"]
    assert request.insurances[1].member_id == MBI
    facts = facts_from_request(request, date_of_service=date(2026, 5, 12), sending_facility="PF")
    assert len(facts.all_payers()) == 2
    assert facts.patient_key == f"MBI|{MBI}"
