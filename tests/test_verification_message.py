"""`verify_message`: the order groups of one message verified as one requisition (pure)."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from labintake.codes.tables import CodeTables, load_code_tables
from labintake.verification import (
    NO_HISTORY,
    DiagnosisFacts,
    OrderFacts,
    PatientHistory,
    PayerFacts,
    PriorTest,
    TestFacts,
    VerificationResult,
    verify,
    verify_message,
)

REPO = Path(__file__).resolve().parent.parent
DOS = date(2026, 5, 12)


@pytest.fixture(scope="module")
def tables() -> CodeTables:
    return load_code_tables(REPO / "code_tables")


def group(first_obr: int, tests: list[str], dx: list[str], placer: str) -> OrderFacts:
    return OrderFacts(
        tests=tuple(
            TestFacts(i + 1, f"OBR[{first_obr + i}]-4", code, "CPT") for i, code in enumerate(tests)
        ),
        diagnoses=tuple(DiagnosisFacts(c, f"DG1[{i + 1}]-3", "I10") for i, c in enumerate(dx)),
        date_of_service=DOS,
        provider_npi="1049382710",
        provider_name="Dana Whitfield",
        payer=PayerFacts("CMS", "Medicare Part B", "MCRB"),
        placer_order_number=placer,
    )


def test_one_group_gives_the_same_result_as_verify(tables: CodeTables) -> None:
    order = group(1, ["80053", "80048"], ["E11.9"], "PL-1")
    assert verify_message([order], tables)[0] == verify(order, tables)


def test_the_finding_names_the_other_group_and_sits_on_the_smaller_panel(
    tables: CodeTables,
) -> None:
    bmp, cmp_ = group(1, ["80048"], ["E87.6"], "PL-A"), group(2, ["80053"], ["E11.9"], "PL-B")
    first, second = verify_message([bmp, cmp_], tables)
    assert [f.code.value for f in first.findings] == ["BUNDLED_COMPONENT"]
    assert second.findings == ()
    finding = first.findings[0]
    assert "in order group 2 of the same message (placer PL-B, OBR[2]-4)" in finding.message
    assert finding.reference["panel_at"] == "OBR[2]-4"
    assert first.status.value == "held"
    assert second.status.value == "verified"


def test_histories_are_one_per_order_or_one_for_all(tables: CodeTables) -> None:
    orders = [group(1, ["84443"], ["E03.9"], "A"), group(2, ["83036"], ["E11.9"], "B")]
    assert len(verify_message(orders, tables, NO_HISTORY)) == 2
    assert len(verify_message(orders, tables, [PatientHistory(), PatientHistory()])) == 2
    with pytest.raises(ValueError, match="2 orders but 1 histories"):
        verify_message(orders, tables, [PatientHistory()])


def test_units_count_once_for_a_test_repeated_in_another_group(tables: CodeTables) -> None:
    orders = [group(1, ["80061"], ["E78.5"], "A"), group(2, ["80061"], ["E78.5"], "B")]
    first, second = verify_message(orders, tables)
    assert first.findings == ()
    assert [f.code.value for f in second.findings] == ["DUPLICATE_ORDER"]


def test_a_duplicate_names_the_patients_earlier_order_before_an_earlier_group(
    tables: CodeTables,
) -> None:
    """The same-day lookup: the catalog test first, then the CPT; the patient's other
    messages before the message's earlier groups."""
    earlier = PriorTest(DOS, "80061", "LIPID", ("E78.5",), order_ref="#7 PL-OLD")
    by_cpt = PriorTest(DOS, "80061", None, ("E78.5",), order_ref="#6 PL-CPT")
    orders = [group(1, ["80061"], ["E78.5"], "A"), group(2, ["80061"], ["E78.5"], "B")]
    for history, first_ref, second_ref in (
        (PatientHistory((by_cpt, earlier)), "#7 PL-OLD", "#7 PL-OLD"),
        # only the CPT matches in the history: the earlier group's catalog test comes first
        (PatientHistory((by_cpt,)), "#6 PL-CPT", "A (group 1 of this message)"),
    ):
        results = verify_message(orders, tables, history)
        messages = [only_message(result, "DUPLICATE_ORDER") for result in results]
        assert f"(order {first_ref})" in messages[0]
        assert f"(order {second_ref})" in messages[1]


def only_message(result: VerificationResult, code: str) -> str:
    (finding,) = [f for f in result.findings if f.code.value == code]
    return finding.message
