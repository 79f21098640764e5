"""The ER7 writer for outbound orders against the hl7apy element-tree builder and parser."""

from __future__ import annotations

from datetime import UTC, date, datetime

import hl7
import pytest
from hl7_tree_builder import build_order_message_with_tree
from hl7apy.consts import VALIDATION_LEVEL
from hl7apy.parser import parse_message
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from labintake.errors import ConfigurationError
from labintake.hl7.escapes import EncodingCharacters, unescape
from labintake.hl7.escaping import ESCAPES, ESCAPES_27
from labintake.hl7.layout import message_layout
from labintake.hl7.order_builder import (
    LisProfile,
    OutboundDiagnosis,
    OutboundOrder,
    OutboundTest,
    build_order_message,
    esc,
    message_plan,
    version_tuple,
)

# Every (type, version) hl7apy defines for the release, with and without billing segments.
SUPPORTED = [
    ("ORM^O01", "2.3.1", False),
    *[("ORM^O01", v, b) for v in ("2.4", "2.5", "2.5.1", "2.6") for b in (True, False)],
    *[
        ("OML^O21", v, b)
        for v in ("2.4", "2.5", "2.5.1", "2.6", "2.7", "2.8", "2.8.2")
        for b in (True, False)
    ],
]


def gapless(message_type: str, version: str) -> bool:
    """hl7apy's tree writer shifts the fields after a position its reference data leaves
    out (v2.6 FT1-8/9, v2.8 OBR...); byte equality with it holds where there is no gap."""
    layout = message_layout(message_type, version)
    return not any(segment.gaps for segment in layout.segments.values())


EQUAL_PROFILES = [p for p in SUPPORTED if gapless(p[0], p[1])]

# Any text but control characters (those become \Xhh\, which hl7apy re-escapes: tested apart).
text = st.text(
    alphabet=st.characters(blacklist_categories=("Cc", "Cs")),
    max_size=12,
)
delimiters = st.text(alphabet="|^~\\&#ab é漢", max_size=8)
value = st.one_of(text, delimiters)
code = st.one_of(st.just(""), st.from_regex(r"[A-Z0-9.\-]{1,8}", fullmatch=True), delimiters)
dates = st.one_of(st.none(), st.dates(min_value=date(1900, 1, 1), max_value=date(2100, 1, 1)))
moments = st.one_of(
    st.none(),
    st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1)).map(
        lambda d: d.replace(tzinfo=UTC)
    ),
)
tests = st.builds(
    OutboundTest,
    seq=st.integers(1, 99),
    local_code=code,
    text=value,
    loinc=code,
    cpt=code,
    units=st.integers(1, 9),
    modifiers=st.lists(
        st.sampled_from(["GA", "QW", "91", "G^A", "Q&W"]), max_size=2, unique=True
    ).map(tuple),
)
orders = st.builds(
    OutboundOrder,
    order_id=st.integers(1, 10**9),
    placer_order_number=value,
    placer_facility=value,
    order_control=st.sampled_from(["NW", "", "X|"]),
    patient_mrn=value,
    patient_family_name=value,
    patient_given_name=value,
    patient_birth_date=dates,
    patient_sex=st.sampled_from(["", "F", "M", "U", "F^"]),
    payer_company_id=value,
    payer_company_name=value,
    payer_plan_id=value,
    provider_npi=code,
    provider_family_name=value,
    provider_given_name=value,
    office_name=value,
    date_of_service=dates,
    ordered_at=moments,
    tests=st.lists(tests, min_size=1, max_size=3).map(tuple),
    diagnoses=st.lists(st.builds(OutboundDiagnosis, code=code, text=value), max_size=3).map(tuple),
)
profiles = st.builds(
    lambda kind, order_code, alternate, application: LisProfile(
        message_type=kind[0],
        version=kind[1],
        billing_codes=kind[2],
        order_code=order_code,
        alternate_code=alternate,
        sending_application=application,
    ),
    st.sampled_from(EQUAL_PROFILES),
    st.sampled_from(["local", "loinc", "cpt"]),
    st.sampled_from(["local", "loinc", "cpt", "none"]),
    st.sampled_from(["LABINTAKE", "LAB|INTAKE", "Läb"]),
)
NOW = datetime(2026, 11, 28, 3, 0, tzinfo=UTC)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(order=orders, profile=profiles, control_id=value)
def test_writer_output_equals_the_hl7apy_tree_builder_byte_for_byte(
    order: OutboundOrder, profile: LisProfile, control_id: str
) -> None:
    # From v2.7 "#" is the truncation character: HL7 escapes it \P\, hl7apy \L\ (tested apart).
    assume(version_tuple(profile.version) < (2, 7) or "#" not in repr((order, control_id)))
    fast = build_order_message(order, profile, control_id, NOW)
    tree = build_order_message_with_tree(order, profile, control_id, NOW)
    assert fast == tree


@pytest.mark.parametrize(("message_type", "version", "billing"), SUPPORTED)
def test_every_supported_profile_parses_back_with_hl7apy_strict_validation(
    message_type: str, version: str, billing: bool
) -> None:
    profile = LisProfile(message_type=message_type, version=version, billing_codes=billing)
    order = OutboundOrder(
        order_id=7,
        placer_order_number="PO1",
        placer_facility="NORTHCLINIC",
        patient_mrn="MRN1",
        patient_family_name="O'Brien|Smith",
        patient_given_name="Zoë",
        patient_birth_date=date(1950, 1, 2),
        patient_sex="F",
        payer_company_id="MCR",
        payer_company_name="Medicare",
        provider_npi="1234567893",
        provider_family_name="Example",
        provider_given_name="Pat",
        office_name="North Clinic",
        date_of_service=date(2026, 11, 27),
        ordered_at=NOW,
        tests=(
            OutboundTest(1, "LIPID", "Lipid panel", "24331-1", "80061"),
            OutboundTest(2, "A1C", "Hemoglobin A1c", "4548-4", "83036", modifiers=("GA",)),
        ),
        diagnoses=(OutboundDiagnosis("E78.5", "Hyperlipidemia"), OutboundDiagnosis("E11.9")),
    )
    raw = build_order_message(order, profile, "LI0001", NOW).decode("utf-8")
    message = parse_message(raw.strip("\r"), validation_level=VALIDATION_LEVEL.STRICT)
    assert message.msh.msh_10.to_er7() == "LI0001"
    assert message.msh.msh_12.to_er7() == version
    # Field positions as HL7 numbers them (read with python-hl7, which has no layout).
    parsed = hl7.parse(raw)
    assert str(parsed.segment("PID")[5]) == "O'Brien\\F\\Smith^Zoë"
    obrs = parsed.segments("OBR")
    assert [str(s[4]).split("^")[0] for s in obrs] == ["LIPID", "A1C"]
    ft1s = [s for s in parsed if str(s[0]) == "FT1"]
    if billing:
        assert [str(s[25]) for s in ft1s] == ["80061^^C4", "83036^^C4"]
        assert [str(s[10]) for s in ft1s] == ["1", "1"]
        assert str(ft1s[1][26]) == "GA^^CPT4"
    else:
        assert ft1s == []
    dg1 = parsed.segments("DG1")[0]
    assert str(dg1[3]) == "E78.5^Hyperlipidemia^I10"
    plan = message_plan(profile)
    assert (str(dg1[2]) == "I10") == plan.writes("DG1_2")  # withdrawn from v2.6


def test_escaping_uses_the_five_delimiter_escapes_and_keeps_utf8_text() -> None:
    assert esc("a|b^c~d\\e&f") == "a\\F\\b\\S\\c\\R\\d\\E\\e\\T\\f"
    assert esc("Zoë 漢") == "Zoë 漢"
    assert esc("line\rnext\n") == "line\\X0D\\next\\X0A\\"
    for original in ["a|b^c~d\\e&f", "Zoë", "two\rlines", "tab\there", "\\X41\\"]:
        assert unescape(esc(original), EncodingCharacters()) == original


@given(st.text(max_size=12))
def test_the_fast_path_of_esc_matches_the_full_translation(value: str) -> None:
    for table in (ESCAPES, ESCAPES_27):
        expected = value.translate(table) if value and not value.isspace() else ""
        assert esc(value, table) == expected


def test_the_fast_path_of_esc_knows_every_character_its_table_escapes() -> None:
    for table in (ESCAPES, ESCAPES_27):
        for code in range(0x250):
            char = chr(code)
            assert (esc("a" + char, table) != "a" + char) == (code in table), hex(code)


def test_truncation_character_is_escaped_from_v27_only() -> None:
    order = OutboundOrder(
        order_id=1,
        placer_order_number="PO#1",
        placer_facility="",
        tests=(OutboundTest(1, "X"),),
    )
    v27 = build_order_message(order, LisProfile(message_type="OML^O21", version="2.7"), "1", NOW)
    v251 = build_order_message(order, LisProfile(version="2.5.1"), "1", NOW)
    assert v27.startswith(b"MSH|^~\\&#|")
    assert b"ORC|NW|PO\\P\\1|" in v27
    assert v251.startswith(b"MSH|^~\\&|")
    assert b"ORC|NW|PO#1|" in v251


def test_a_version_that_cannot_carry_the_profile_is_refused_at_configuration() -> None:
    with pytest.raises(ConfigurationError, match="FT1"):
        LisProfile(message_type="ORM^O01", version="2.3.1", billing_codes=True)
    with pytest.raises(ConfigurationError, match="no ORM\\^O01"):
        LisProfile(message_type="ORM^O01", version="2.7")
    with pytest.raises(ConfigurationError):
        LisProfile(message_type="OML^O21", version="2.3.1")


def test_layout_comes_from_hl7apy_reference_data() -> None:
    layout = message_layout("ORM^O01", "2.5.1")
    assert layout.segments["OBR"].path[-1] == "ORM_O01_OBRRQDRQ1RXOODSODT_SUPPGRP"
    ft1_26 = layout.field("FT1_26")
    assert ft1_26 is not None
    assert ft1_26.repeatable
    assert ft1_26.datatype == "CE"
    dg1_2 = message_layout("ORM^O01", "2.6").field("DG1_2")
    assert dg1_2 is not None
    assert dg1_2.withdrawn
