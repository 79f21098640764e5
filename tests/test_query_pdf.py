"""The office query PDF: letterhead, coder and direct line, respond-by date, notice, the tests,
one question per finding with its own choices, and every name as sent (Unicode fonts)."""

from __future__ import annotations

import dataclasses
import io
import logging
from datetime import UTC, date, datetime
from pathlib import Path

import pypdf
import pytest
from fontTools.fontBuilder import FontBuilder
from fontTools.pens.ttGlyphPen import TTGlyphPen

from labintake.models.orders import Finding, Order, OrderDiagnosis, OrderTest
from labintake.models.queue import OfficeQuery
from labintake.queue.office_query import OTHER, compose_query
from labintake.queue.query_letterhead import Letterhead
from labintake.queue.query_pdf import render_query_pdf
from labintake.queue.query_questions import NPI_CHOICES, REASON_DOCUMENTED

NAMES = [
    ("Núñez", "José"),
    ("Þórsdóttir", "Guðrún"),
    ("Łukasiewicz", "Jan"),
    ("Παπαδοπούλου", "Ελένη"),
    ("Кузнецова", "Анна"),
    ("Nguyễn", "Thảo"),
]
LETTERHEAD = Letterhead(
    lab_name="Prairie Reference Laboratory",
    lab_address="1200 Elm Street, Suite 4, Des Moines, IA 50309",
    lab_phone="(515) 555-0100",
    lab_fax="(515) 555-0199",
    coder_name="Ann Coder",
    coder_phone="(515) 555-0142 ext 12",
    notice="CONFIDENTIAL: protected health information for the ordering provider only.",
)


def _order(family: str, given: str) -> Order:
    return Order(
        id=7,
        message_id=1,
        group_index=1,
        patient_family_name=family,
        patient_given_name=given,
        patient_mrn="PF20001",
        placer_order_number="PF9001",
        provider_given_name="Dana",
        provider_family_name="Whitfield",
        provider_npi="1987654321",
        office_name="Smith & Jones Family Medicine",
        office_fax="(515) 555-0178",
        date_of_service=date(2026, 3, 15),
    )


def _query(order: Order) -> OfficeQuery:
    tests = [
        OrderTest(order_id=7, seq=1, sent_code="83036", sent_text="HEMOGLOBIN A1C"),
        OrderTest(order_id=7, seq=2, sent_code="84153", sent_text="PSA"),
    ]
    dx = [OrderDiagnosis(order_id=7, seq=1, code="E11", text="Diabetes")]
    findings = [
        Finding(
            id=1, order_id=7, verification_id=1, code="NECESSITY_NOT_SUPPORTED",
            severity="hold", message="m", test_seq=2,
        ),
        Finding(
            id=2, order_id=7, verification_id=1, code="PROVIDER_NPI_INVALID", severity="hold",
            message="m", reference={"subject": "1987654321"},
        ),
    ]  # fmt: skip
    draft = compose_query(order, findings, dx, tests)
    return OfficeQuery(
        id=3,
        order_id=7,
        actor="ann",
        created_at=datetime(2026, 12, 4, 15, 0, tzinfo=UTC),
        question=draft.question,
        indicators=list(draft.indicators),
        choices=list(draft.choices),
        tests=list(draft.tests),
        questions=[q.as_json() for q in draft.questions],
        finding_keys=list(draft.finding_keys),
        respond_by=date(2026, 12, 9),
    )


def _text(pdf: bytes) -> str:
    reader = pypdf.PdfReader(io.BytesIO(pdf))
    return "\n".join(page.extract_text() for page in reader.pages)


def _flat(text: str) -> str:
    return " ".join(text.split())


@pytest.mark.parametrize(("family", "given"), NAMES)
def test_every_name_prints_as_sent(family: str, given: str) -> None:
    order = _order(family, given)
    text = _text(render_query_pdf(order, _query(order), LETTERHEAD))
    assert f"{family}, {given}" in text


def test_the_letterhead_the_coder_the_date_to_answer_by_and_the_notice_are_printed() -> None:
    order = _order("Núñez", "José")
    text = _flat(_text(render_query_pdf(order, _query(order), LETTERHEAD)))
    assert "Prairie Reference Laboratory" in text
    assert "1200 Elm Street, Suite 4, Des Moines, IA 50309" in text
    assert "Phone (515) 555-0100 · Return fax (515) 555-0199" in text
    assert "From: Ann Coder, coding · direct line (515) 555-0142 ext 12" in text
    assert "Please answer by Wednesday, December 9, 2026 by fax to (515) 555-0199." in text
    assert "CONFIDENTIAL: protected health information for the ordering provider only." in text
    assert "Page 1 of 1" in text


def test_the_tests_are_listed_and_each_question_offers_its_own_choices() -> None:
    order = _order("Núñez", "José")
    text = _flat(_text(render_query_pdf(order, _query(order), LETTERHEAD)))
    assert "Tests ordered - HEMOGLOBIN A1C (as sent: 83036) - PSA (as sent: 84153)" in text
    necessity_at = text.index("1. About the test PSA (as sent: 84153), with the reason given")
    npi_at = text.index("2. About the ordering provider as sent (Dana Whitfield, NPI 1987654321)")
    assert necessity_at < npi_at
    assert text.count(REASON_DOCUMENTED) == 1  # offered to the clinical question only
    assert necessity_at < text.index(REASON_DOCUMENTED) < npi_at
    assert npi_at < text.index(NPI_CHOICES[0])
    assert text.count(OTHER) == 2  # each question has its own "other"


def test_a_query_written_before_questions_were_stored_one_by_one_still_prints() -> None:
    order = _order("Łukasiewicz", "Jan")
    legacy = OfficeQuery(
        id=2,
        order_id=7,
        actor="ann",
        created_at=datetime(2026, 11, 2, 9, 0, tzinfo=UTC),
        question="About the order as a whole: Please state the reason.\nSecond question.",
        indicators=["Test ordered: PSA (as sent: 84153)"],
        choices=[REASON_DOCUMENTED, OTHER],
    )
    text = _flat(_text(render_query_pdf(order, legacy, LETTERHEAD)))
    assert "1. About the order as a whole: Please state the reason." in text
    assert "2. Second question." in text
    assert text.index("2. Second question.") < text.index(REASON_DOCUMENTED)
    assert "Please answer by" not in text  # it had no date to answer by


def _font_with(character: str, path: Path) -> Path:
    """A TrueType font with one glyph (a square) for `character`."""
    name = f"uni{ord(character):04X}"
    builder = FontBuilder(1000, isTTF=True)
    builder.setupGlyphOrder([".notdef", name])
    builder.setupCharacterMap({ord(character): name})
    pen = TTGlyphPen(None)
    for x, y in ((100, 0), (100, 700), (800, 700), (800, 0)):
        (pen.moveTo if x == 100 and y == 0 else pen.lineTo)((x, y))
    pen.closePath()
    square = pen.glyph()
    builder.setupGlyf({".notdef": TTGlyphPen(None).glyph(), name: square})
    builder.setupHorizontalMetrics({".notdef": (500, 0), name: (1000, 100)})
    builder.setupHorizontalHeader(ascent=880, descent=-120)
    builder.setupNameTable({"familyName": "Test Fallback", "styleName": "Regular"})
    builder.setupOS2()
    builder.setupPost()
    builder.save(str(path))
    return path


def test_a_fallback_font_prints_the_characters_dejavu_lacks(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    order = _order("王", "小明")
    query = _query(order)
    with caplog.at_level(logging.WARNING):
        without = _text(render_query_pdf(order, query, LETTERHEAD))
    assert "王" not in without
    assert any("missing" in r.getMessage() for r in caplog.records)
    fonts = (_font_with("王", tmp_path / "wang.ttf"),)
    with_fallback = dataclasses.replace(LETTERHEAD, fallback_fonts=fonts)
    assert "王" in _text(render_query_pdf(order, query, with_fallback))
