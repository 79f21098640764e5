"""The office query as a PDF (fpdf2), the same content as the printable page."""

from __future__ import annotations

import unicodedata
from datetime import UTC

from fpdf import FPDF

from labintake.models.orders import Order
from labintake.models.queue import OfficeQuery


def _latin1(text: str) -> str:
    """The core PDF fonts are Latin-1: fold accents, replace what cannot be shown."""
    folded = unicodedata.normalize("NFKC", text)
    try:
        folded.encode("latin-1")
        return folded
    except UnicodeEncodeError:
        stripped = "".join(
            c for c in unicodedata.normalize("NFKD", folded) if not unicodedata.combining(c)
        )
        return stripped.encode("latin-1", errors="replace").decode("latin-1")


def render_query_pdf(order: Order, query: OfficeQuery, lab_name: str = "Laboratory") -> bytes:
    pdf = FPDF(format="Letter")
    pdf.set_margins(20, 18, 20)
    pdf.add_page()
    width = pdf.w - pdf.l_margin - pdf.r_margin

    def line(text: str, size: int = 10, style: str = "", gap: float = 1.5) -> None:
        pdf.set_font("Helvetica", style, size)
        pdf.multi_cell(width, size * 0.5, _latin1(text), new_x="LMARGIN", new_y="NEXT")
        pdf.ln(gap)

    line(f"{lab_name}: query to the ordering provider", 14, "B", 3)
    line(f"Query {query.id}, {query.created_at.astimezone(UTC):%Y-%m-%d}", 9)
    provider = " ".join(p for p in (order.provider_given_name, order.provider_family_name) if p)
    line(f"To: {provider or 'Ordering provider'}, {order.office_name}".strip(", "), 10, "B")
    if order.office_fax or order.office_phone:
        line(f"Fax {order.office_fax or '-'}   Phone {order.office_phone or '-'}", 9)
    patient = ", ".join(p for p in (order.patient_family_name, order.patient_given_name) if p)
    born = order.patient_birth_date.isoformat() if order.patient_birth_date else "-"
    line(f"Patient: {patient}   Born: {born}   MRN: {order.patient_mrn}", 10)
    dos = order.date_of_service.isoformat() if order.date_of_service else "-"
    line(f"Order: {order.placer_order_number}   Date of service: {dos}", 10, "", 4)
    line("What the order shows", 11, "B")
    for indicator in query.indicators:
        line(f"- {indicator}", 10, "", 0.5)
    pdf.ln(3)
    line("Question", 11, "B")
    for paragraph in query.question.split("\n"):
        line(paragraph, 10)
    pdf.ln(2)
    line("Your answer (tick one and add details)", 11, "B")
    for choice in query.choices:
        line(f"[  ]  {choice}", 10, "", 1)
    pdf.ln(2)
    line("Details: " + "_" * 70, 10, "", 6)
    line("Provider name and signature: " + "_" * 40 + "   Date: " + "_" * 12, 10, "", 4)
    line(
        "Please answer from the patient's record. This query does not suggest any "
        "particular answer.",
        8,
        "I",
    )
    return bytes(pdf.output())
