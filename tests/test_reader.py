"""read_orders: order groups, where each value comes from, deviations, errors and warnings."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

import pytest

from labintake.errors import OrderReadError
from labintake.hl7.reader import read_orders

MSH = "MSH|^~\\&|EHR|CLINIC|LAB|LAB|20240301101500||ORM^O01|CTL1|P|2.5.1"
OML = "MSH|^~\\&|EHR|CLINIC|LAB|LAB|20240301101500||OML^O21^OML_O21|CTL2|P|2.5.1|||AL|NE"
PID = "PID|1||MRN1^^^CLINIC^MR||Doe^Jane||19600101|F"


def message(*segments: str, header: str = MSH, sep: str = "\r") -> str:
    return sep.join((header, *segments)) + sep


def seg(name: str, **fields: str) -> str:
    """A segment with the given fields (f1=..., f12=...) and the rest empty."""
    values = {int(key[1:]): value for key, value in fields.items()}
    return "|".join([name, *(values.get(n, "") for n in range(1, max(values) + 1))])


def test_two_orc_groups_with_two_obrs_under_the_first_give_two_orders() -> None:
    result = read_orders(
        message(
            PID,
            "ORC|NW|P1",
            "OBR|1|P1||80061^Lipid^CPT",
            "OBR|2|P1||83036^A1c^CPT",
            "ORC|NW|P2",
            "OBR|1|P2||84443^TSH^CPT",
        )
    )
    orders = result.orders
    assert [o.placer_order_number for o in orders] == ["P1", "P2"]
    assert [o.group_index for o in orders] == [1, 2]
    assert [[t.service.code for t in o.tests] for o in orders] == [["80061", "83036"], ["84443"]]
    assert [t.location for t in orders[0].tests] == ["OBR[1]-4", "OBR[2]-4"]
    assert orders[1].tests[0].location == "OBR[3]-4"


def test_obr_without_orc_is_an_order_of_its_own_with_placer_from_obr2() -> None:
    orders = read_orders(message(PID, "OBR|1|A1||85025^CBC^CPT", "OBR|2|A2||84443^TSH^CPT")).orders
    assert [(o.placer_order_number, o.order_control) for o in orders] == [
        ("A1", "NW"),
        ("A2", "NW"),
    ]
    assert [len(o.tests) for o in orders] == [1, 1]


def test_oml_o21_groups_with_tq1_dg1_per_obr_and_spm() -> None:
    orders = read_orders(
        message(
            PID,
            "IN1|1|MCR^Medicare|CMS|Medicare Part B",
            "ORC|NW|L1^LV",
            "TQ1|1|2|||||20240302080000-0600||S^Stat^HL70485",
            "OBR|1|L1^LV||2345-7^Glucose^LN",
            "DG1|1||R73.09^Abnormal glucose^I10C",
            "SPM|1|S1||119297000^Blood specimen^SCT|||||||||||||20240302081500-0600",
            "ORC|NW|L2^LV",
            "TQ1|1||||||20240302080000-0600||R",
            "OBR|1|L2^LV||4548-4^A1c^LN|||20240302075000",
            "DG1|1||E11.65^T2DM hyperglycemia^I10C",
            "DG1|2||E11.9^T2DM^I10C",
            header=OML,
        )
    ).orders
    first, second = orders
    assert first.placer_order_number == "L1"
    assert [d.code for d in first.diagnoses] == ["R73.09"]
    assert first.diagnoses[0].location == "DG1[1]-3"
    assert first.diagnoses[0].system == "I10C"
    assert (first.priority, first.tests[0].units, first.tests[0].specimen) == (
        "S",
        2,
        "Blood specimen",
    )
    # No OBR-7: the specimen's collection time (SPM-17) is the date of service.
    assert (first.date_of_service, first.date_of_service_source) == (date(2024, 3, 2), "SPM[1]-17")
    assert [d.code for d in second.diagnoses] == ["E11.65", "E11.9"]
    assert [d.location for d in second.diagnoses] == ["DG1[2]-3", "DG1[3]-3"]
    assert (second.date_of_service_source, second.priority) == ("OBR[2]-7", "R")
    assert first.insurances[0].company_name == "Medicare Part B"


def test_epic_style_dg1_before_orc_applies_to_every_order_once() -> None:
    orders = read_orders(
        message(
            PID,
            "PV1|1|O|CLINIC||||||||||||||||V123",
            "DG1|1|I10|E11.9^T2DM^I10",
            "DG1|2|I10|I10^Hypertension^I10",
            "ORC|NW|P1",
            "OBR|1|P1||LAB1^CBC^L",
            "ORC|NW|P2",
            "OBR|1|P2||LAB2^Lipid^L",
            "DG1|3|I10|E11.9^T2DM again^I10",
            "DG1|4|I10|E78.5^Hyperlipidemia^I10",
        )
    ).orders
    assert [d.code for d in orders[0].diagnoses] == ["E11.9", "I10"]
    assert [(d.code, d.location) for d in orders[1].diagnoses] == [
        ("E11.9", "DG1[1]-3"),
        ("I10", "DG1[2]-3"),
        ("E78.5", "DG1[4]-3"),
    ]
    assert ("PV1[1]-19 visit number", "V123") in orders[0].extras


@pytest.mark.parametrize("sep", ["\n", "\r\n", "\r\r", "\n\n"])
def test_segment_separators_lf_crlf_and_blank_lines_read_like_cr(sep: str) -> None:
    segments = (PID, "ORC|NW|P1", "OBR|1|P1||LAB1^CBC^L")
    assert read_orders(message(*segments, sep=sep)) == read_orders(message(*segments))


def test_hl7_null_is_read_as_empty() -> None:
    [order] = read_orders(
        message(
            'PID|1||MRN1^^^CLINIC^MR||Doe^""||""|""',
            'ORC|NW|P1|""',
            'OBR|1|P1|""|LAB1^CBC^L|||""|||||||||""',
        )
    ).orders
    assert order.filler_order_number == ""
    assert order.patient.given_name == ""
    assert order.patient.birth_date is None
    assert order.date_of_service_source == "MSH-7"
    assert order.provider.family_name == ""


def test_five_encoding_characters_with_truncation_character() -> None:
    header = MSH.replace("^~\\&", "^~\\&#").replace("2.5.1", "2.7")
    [order] = read_orders(
        message(PID, "ORC|NW|P1", "OBR|1|P1||LAB1^CBC \\P\\1^L", header=header)
    ).orders
    assert order.tests[0].service.text == "CBC #1"


def test_escape_sequences_are_decoded_in_every_field() -> None:
    [order] = read_orders(
        message(
            "PID|1||MRN1^^^CLINIC^MR||O\\X27\\Brien^Zo\\XC3AB\\||19600101|F",
            "NTE|1||a \\F\\ b \\S\\ c \\T\\ d \\R\\ e \\E\\ f\\.br\\next line",
            seg("ORC", f1="NW", f2="P1", f21="Smith \\T\\ Jones"),
            "OBR|1|P1||LAB1^CBC^L",
            "NTE|1||x\\H\\bold\\N\\ \\Zlocal\\y",
        )
    ).orders
    assert (order.patient.family_name, order.patient.given_name) == ("O'Brien", "Zoë")
    assert order.notes == ("a | b ^ c & d ~ e \\ f\nnext line",)
    assert order.office.name == "Smith & Jones"
    assert order.tests[0].notes == ("xbold y",)
    assert any("\\Zlocal\\ not supported" in w for w in order.warnings)


def test_non_ascii_names_z_segments_and_stray_lines() -> None:
    result = read_orders(
        message(
            "PID|1||MRN1^^^CLINIC^MR||Ågren^Björn||19600101|M",
            "ZPI|1|vendor",
            "ORC|NW|P1",
            "OBR|1|P1||LAB1^CBC^L",
            "ZXX|ignored",
            "free text broken off a note",
        )
    )
    [order] = result.orders
    assert order.patient.family_name == "Ågren"
    assert result.warnings == ("line 7 is not a segment, ignored: 'free text broken off a note'",)
    assert order.warnings == result.warnings


@pytest.mark.parametrize(
    ("text", "reason", "location"),
    [
        ("", "the message is empty", "MSH"),
        ("PID|1||X\rORC|NW|P1", "no MSH segment: the message starts with 'PID|1||X'", "MSH"),
        (message("ORC|NW|P1", "OBR|1|P1||LAB1"), "no PID segment", "PID"),
        (message("PID|1||", "OBR|1|P1||LAB1"), "PID-3 empty: no patient identifier", "PID-3"),
        (message(PID), "no order group: the message has no ORC or OBR segment", "ORC"),
        (message(PID, "ORC|NW|P1"), "ORC[1] has no OBR: no test requested", "ORC[1]"),
        (
            message(PID, "ORC|NW|P1", "OBR|1|P1||LAB1", "ORC|NW|P2", "OBR|1|P2||^^L"),
            "OBR[2]-4 empty: no test requested",
            "OBR[2]-4",
        ),
        (
            message(PID, "ORC|CA|", "OBR|1|||LAB1"),
            "ORC[1]-2 empty: a cancel must name the placer order number",
            "ORC[1]-2",
        ),
        (
            message(PID, header=MSH.replace("ORM^O01", "ADT^A01")),
            "MSH-9 'ADT^A01' is not an order message (ORM^O01 or OML^O21)",
            "MSH-9",
        ),
        (
            message(PID, "ORC|NW|P1", "OBR|1|P1||LAB1", MSH),
            "a second MSH at line 5: one message per stored message",
            "MSH[2]",
        ),
        (
            message(PID, PID, "ORC|NW|P1", "OBR|1|P1||LAB1"),
            "PID[2]: a second patient in one message is not supported",
            "PID[2]",
        ),
    ],
)
def test_unreadable_messages_raise_with_reason_and_location(
    text: str, reason: str, location: str
) -> None:
    with pytest.raises(OrderReadError) as caught:
        read_orders(text)
    assert caught.value.text == reason
    assert caught.value.location == location


def test_every_unreadable_group_is_named_in_one_error() -> None:
    with pytest.raises(OrderReadError) as caught:
        read_orders(message(PID, "ORC|NW|P1", "OBR|1|P1||", "ORC|NW|P2"))
    assert caught.value.text == (
        "OBR[1]-4 empty: no test requested; ORC[2] has no OBR: no test requested"
    )


def test_bad_birth_date_is_a_warning_and_the_order_is_read() -> None:
    [order] = read_orders(
        message("PID|1||MRN1^^^CLINIC^MR||Doe^Jane||2023-13-45|F", "ORC|NW|P1", "OBR|1|P1||LAB1")
    ).orders
    assert order.patient.birth_date is None
    assert order.warnings == (
        "PID-7 '2023-13-45' is not an HL7 date (YYYYMMDD[HHMM[SS]][+/-ZZZZ]); "
        "birth date left empty",
    )


def test_other_lenient_readings_are_warnings() -> None:
    [order] = read_orders(
        message(
            "PID|1||MRN1^^^CLINIC^MR||||20230230",
            "DG1|1|I10|",
            "ORC|XO||||||||20240305",
            "OBR|1|||LAB1|||20241332",
        )
    ).orders
    assert order.order_control == "XO"
    assert order.date_of_service == date(2024, 3, 5)
    assert order.date_of_service_source == "ORC[1]-9"
    assert set(order.warnings) == {
        "PID-5 empty: no patient name",
        "PID-7 '20230230' is not an HL7 date (no such day or time); birth date left empty",
        "DG1[1]-3 empty: diagnosis ignored",
        "ORC[1]-1 'XO' read as a new order; an earlier order is not changed",
        "ORC[1]-2 empty: no placer order number",
        "OBR[1]-7 '20241332' is not an HL7 date (no such day or time); "
        "not used as the date of service",
    }


def test_date_of_service_precedence_and_its_source() -> None:
    def dos(*segments: str) -> tuple[date | None, str]:
        [order] = read_orders(message(PID, *segments)).orders
        return order.date_of_service, order.date_of_service_source

    orc9 = seg("ORC", f1="NW", f2="P1", f9="20240305")
    assert dos(orc9, seg("OBR", f2="P1", f4="L", f6="20240307", f7="20240301")) == (
        date(2024, 3, 1),
        "OBR[1]-7",
    )
    orc7 = seg("ORC", f1="NW", f2="P1", f7="^^^20240304", f9="20240305")
    assert dos(orc7, seg("OBR", f2="P1", f4="L", f6="20240307")) == (
        date(2024, 3, 4),
        "ORC[1]-7.4",
    )
    assert dos(orc9, seg("OBR", f2="P1", f4="L", f6="20240307")) == (
        date(2024, 3, 7),
        "OBR[1]-6",
    )
    assert dos(orc9, "OBR|1|P1||L") == (date(2024, 3, 5), "ORC[1]-9")
    assert dos("ORC|NW|P1", "OBR|1|P1||L") == (date(2024, 3, 1), "MSH-7")


def test_ordered_at_keeps_the_utc_offset_when_sent() -> None:
    orc = seg("ORC", f1="NW", f2="P1", f9="20240305083000-0500")
    [order] = read_orders(message(PID, orc, "OBR|1|P1||L")).orders
    assert order.ordered_at == datetime(2024, 3, 5, 8, 30, tzinfo=timezone(timedelta(hours=-5)))
    assert order.ordered_at.astimezone(UTC).hour == 13
    [naive] = read_orders(message(PID, "ORC|NW|P1", "OBR|1|P1||L")).orders
    assert naive.ordered_at == datetime(2024, 3, 1, 10, 15)


def test_provider_from_orc12_with_npi_authority_else_obr16() -> None:
    def provider(*segments: str) -> tuple[str, str, str]:
        [order] = read_orders(message(PID, *segments)).orders
        p = order.provider
        return p.npi, p.family_name, p.location

    orc12 = seg("ORC", f1="NW", f2="P1", f12="D123^Local^Doc~1234567893^Okafor^Chidi^^^^^^NPI")
    assert provider(orc12, "OBR|1|P1||L") == ("1234567893", "Okafor", "ORC[1]-12")
    obr16 = "OBR|1|P1||L||||||||||||1452369873^Lindqvist^Astrid"
    assert provider("ORC|NW|P1", obr16) == ("1452369873", "Lindqvist", "OBR[1]-16")
    [order] = read_orders(
        message(PID, seg("ORC", f1="NW", f2="P1", f12="D123^Local^Doc^^^^^^HOSP"), "OBR|1|P1||L")
    ).orders
    assert (order.provider.npi, order.provider.identifier) == ("", "D123")
    assert order.provider.id_authority == "HOSP"


def test_office_contact_from_orc21_to_orc24_and_callback_phone() -> None:
    [order] = read_orders(
        message(
            PID,
            seg(
                "ORC",
                f1="NW",
                f2="P1",
                f14="^WPN^PH^^^515^5550100",
                f21="Prairie FM",
                f22="88 Prairie Ave^^Ames^IA^50010",
                f23="^WPN^PH^^^515^5550177~^WPN^FX^^^515^5550178",
            ),
            "OBR|1|P1||L",
        )
    ).orders
    office = order.office
    assert office.name == "Prairie FM"
    assert office.address == "88 Prairie Ave, Ames, IA 50010"
    assert (office.phone, office.fax) == ("(515) 555-0177", "(515) 555-0178")
    assert office.callback_phone == "(515) 555-0100"


def test_patient_mrn_is_the_mr_typed_id_else_the_first() -> None:
    [order] = read_orders(
        message(
            "PID|1||999-00-1111^^^SSA^SS~M77^^^CLINIC^MR||Doe^Jane||19600101|f",
            "ORC|NW|P1",
            "OBR|1|P1||L",
        )
    ).orders
    assert order.patient.mrn == "M77"
    assert order.patient.identifiers == ("999-00-1111^^^SSA^SS", "M77^^^CLINIC^MR")
    assert order.patient.sex == "F"
    [first] = read_orders(message("PID|1||X1~X2", "OBR|1|P1||L")).orders
    assert first.patient.mrn == "X1"


def test_priority_notes_answers_and_signature() -> None:
    [order] = read_orders(
        message(
            PID,
            "NTE|1||message note",
            "ORC|NW|P1",
            "NTE|1||order note",
            seg("OBR", f1="1", f2="P1", f4="L", f27="^^^^^A"),
            "NTE|1||test note~second line",
            "OBX|1|CWE|FAST^Fasting?||Y^Yes",
            "OBX|2|ST|SIG^Provider signature on file||N",
        )
    ).orders
    assert order.priority == "A"
    assert order.notes == ("message note", "order note")
    assert order.tests[0].notes == ("test note\nsecond line",)
    assert order.tests[0].answers == (("Fasting?", "Yes"), ("Provider signature on file", "N"))
    assert order.signature_on_file is False


def test_cancel_group_without_obr_is_read() -> None:
    [order] = read_orders(message(PID, "ORC|CA|P1")).orders
    assert (order.order_control, order.placer_order_number, order.tests) == ("CA", "P1", ())


def test_message_type_without_trigger_is_read_with_a_warning() -> None:
    result = read_orders(message(PID, "OBR|1|P1||L", header=MSH.replace("ORM^O01", "ORM")))
    assert result.header.message_type == "ORM^O01"
    assert result.warnings == ("MSH-9 'ORM' has no trigger event: read as ORM^O01",)


def test_header_fields_are_read() -> None:
    result = read_orders(message(PID, "OBR|1|P1||L", header=OML + "|USA|UNICODE UTF-8"))
    header = result.header
    assert (header.sending_application, header.sending_facility) == ("EHR", "CLINIC")
    assert (header.control_id, header.version, header.charset) == ("CTL2", "2.5.1", "UNICODE UTF-8")
    assert (header.accept_ack_type, header.application_ack_type) == ("AL", "NE")
    assert header.sent_at == datetime(2024, 3, 1, 10, 15)
