"""The office query as a PDF (fpdf2): the same content as the printable page.

Text is set in DejaVu Sans, shipped in `labintake/queue/fonts/` with its licence, so every
Latin, Greek, Cyrillic, Hebrew or Arabic name prints as sent; fonts named in
`LABINTAKE_QUERY_FALLBACK_FONTS` are tried for characters it lacks (Chinese, Japanese and
Korean names). The confidentiality notice and the page number are in every page's footer.
"""

from __future__ import annotations

from datetime import UTC, date
from importlib.resources import files
from pathlib import Path

from fpdf import FPDF

from labintake.models.orders import Order
from labintake.models.queue import OfficeQuery
from labintake.queue.office_query import stored_questions
from labintake.queue.query_letterhead import Letterhead

FONT = "DejaVuSans"
BOX = "\u2610"  # a ballot box to tick


def _font_file(name: str) -> Path:
    return Path(str(files("labintake.queue").joinpath("fonts", name)))


def _day(value: date | None) -> str:
    return f"{value:%A, %B} {value.day}, {value.year}" if value is not None else "-"


class _QueryDocument(FPDF):
    def __init__(self, notice: str) -> None:
        super().__init__(format="Letter")
        self.notice = notice

    def footer(self) -> None:
        self.set_y(-22)
        self.set_font(FONT, "", 7)
        self.multi_cell(0, 3.2, self.notice, align="L", new_x="LMARGIN", new_y="NEXT")
        self.cell(0, 4, f"Page {self.page_no()} of {{nb}}", align="R")


def render_query_pdf(order: Order, query: OfficeQuery, letterhead: Letterhead) -> bytes:
    pdf = _QueryDocument(letterhead.notice)
    pdf.add_font(FONT, "", str(_font_file("DejaVuSans.ttf")))
    pdf.add_font(FONT, "B", str(_font_file("DejaVuSans-Bold.ttf")))
    fallbacks = []
    for i, path in enumerate(letterhead.fallback_fonts):
        pdf.add_font(f"Fallback{i}", "", str(path))
        fallbacks.append(f"Fallback{i}")
    if fallbacks:
        pdf.set_fallback_fonts(fallbacks, exact_match=False)
    pdf.set_margins(20, 16, 20)
    pdf.set_auto_page_break(True, margin=26)
    pdf.add_page()
    width = pdf.w - pdf.l_margin - pdf.r_margin

    def line(text: str, size: float = 10, style: str = "", gap: float = 1.5) -> None:
        pdf.set_font(FONT, style, size)
        pdf.multi_cell(width, size * 0.5, text, align="L", new_x="LMARGIN", new_y="NEXT")
        pdf.ln(gap)

    # Letterhead: who writes, and where the answer goes.
    line(letterhead.lab_name, 15, "B", 0.5)
    if letterhead.lab_address:
        line(letterhead.lab_address, 9, "", 0.5)
    if letterhead.contact_line:
        line(letterhead.contact_line, 9, "", 0.5)
    pdf.ln(1)
    pdf.line(pdf.l_margin, pdf.get_y(), pdf.w - pdf.r_margin, pdf.get_y())
    pdf.ln(3)

    line("Query to the ordering provider", 13, "B", 1)
    line(f"Query {query.id} · written {query.created_at.astimezone(UTC):%Y-%m-%d}", 9, "", 0.5)
    if query.respond_by is not None:
        answer_to = f" by fax to {letterhead.lab_fax}" if letterhead.lab_fax else ""
        line(f"Please answer by {_day(query.respond_by)}{answer_to}.", 10, "B", 1)
    line(f"From: {letterhead.from_line}", 10, "", 1)
    provider = " ".join(p for p in (order.provider_given_name, order.provider_family_name) if p)
    line(f"To: {provider or 'Ordering provider'}, {order.office_name}".strip(", "), 10, "B", 0.5)
    if order.office_fax or order.office_phone:
        line(f"Fax {order.office_fax or '-'}   Phone {order.office_phone or '-'}", 9, "", 1)
    patient = ", ".join(p for p in (order.patient_family_name, order.patient_given_name) if p)
    born = order.patient_birth_date.isoformat() if order.patient_birth_date else "-"
    line(f"Patient: {patient}   Born: {born}   MRN: {order.patient_mrn}", 10, "", 0.5)
    dos = order.date_of_service.isoformat() if order.date_of_service else "-"
    line(f"Order: {order.placer_order_number}   Date of service: {dos}", 10, "", 4)

    if query.tests:
        line("Tests ordered", 11, "B")
        for test in query.tests:
            line(f"- {test}", 10, "", 0.5)
        pdf.ln(2.5)
    if query.indicators:
        line("What the order shows", 11, "B")
        for indicator in query.indicators:
            line(f"- {indicator}", 10, "", 0.5)
        pdf.ln(2.5)

    questions = stored_questions(query)
    line("Questions" if len(questions) > 1 else "Question", 11, "B")
    line("Tick the answer that applies to each question and add details.", 9, "", 2)
    for number, asked in enumerate(questions, start=1):
        if asked.about:
            line(f"{number}. {asked.about}", 10, "B", 0.5)
            line(asked.text, 10, "", 1)
        else:
            line(f"{number}. {asked.text}", 10, "", 1)
        for choice in asked.choices:
            line(f"  {BOX}  {choice}", 10, "", 0.8)
        if asked.choices:
            line("Details: " + "_" * 62, 10, "", 4)
    line("Provider name and signature: " + "_" * 34 + "   Date: " + "_" * 12, 10, "", 3)
    line(
        "Please answer from the patient's record. This query does not suggest any "
        "particular answer.",
        8,
    )
    return bytes(pdf.output())
