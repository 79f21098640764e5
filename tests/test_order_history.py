"""The order history in sentences (`labintake.queue.history.describe`)."""

from __future__ import annotations

from typing import Any

import pytest

from labintake.models.orders import OrderEvent
from labintake.queue.history import describe

WHERE = {"DG1[1]-3": "E11"}


def _event(action: str, detail: dict[str, Any]) -> OrderEvent:
    return OrderEvent(order_id=1, actor="ann", action=action, detail=detail)


@pytest.mark.parametrize(
    ("action", "detail", "sentence"),
    [
        (
            "contact_recorded",
            {"after": {"channel": "phone", "outcome": "answered", "answer": "Type 2."}},
            "Office answered by phone: “Type 2.”",
        ),
        (
            "contact_recorded",
            {"after": {"channel": "fax", "outcome": "sent", "follow_up_on": "2026-12-08"}},
            "Tried the office by fax: query sent, awaiting reply; follow up on 2026-12-08.",
        ),
        (
            "diagnosis_corrected",
            {"before": {"diagnoses": ["E11"]}, "after": {"diagnoses": ["E11.9"]}, "contact_id": 2},
            "E11 replaced by E11.9, citing the office's answer (contact 2).",
        ),
        (
            "diagnosis_removed",
            {"before": {"diagnoses": ["E11", "Z00.00"]}, "after": {"diagnoses": ["E11"]}},
            "Z00.00 removed.",
        ),
        (
            "verified",
            {"status_after": "held", "added": ["DX_NOT_BILLABLE@DG1[1]-3"], "resolved": []},
            "Checked, held; found: Diagnosis not billable (E11).",
        ),
        (
            "re_verified",
            {"status_after": "verified", "resolved": ["DX_NOT_BILLABLE@DG1[1]-3"]},
            "Checked, verified, ready for release; resolved: Diagnosis not billable (E11).",
        ),
        (
            "taken_over",
            {"before": {"assigned_to": "ann"}, "after": {"assigned_to": "ben"}},
            "Took the order over from ann.",
        ),
        ("assigned", {"after": {"assigned_to": None}}, "Put back in the queue, unassigned."),
        ("query_created", {"after": {"query_id": 3}}, "Query 3 written to the office."),
        (
            "holds_overridden",
            {"before": {"open": ["DX_NOT_BILLABLE"]}, "after": {"reason": "ABN", "modifier": "GA"}},
            "Holds overridden with modifier GA (Diagnosis not billable): ABN.",
        ),
        ("rejected", {"after": {"reason": "Duplicate"}}, "Rejected: Duplicate."),
        ("something_new", {}, "Something new."),
        ("contact_recorded", {"after": "not a dict"}, "Contact recorded."),
    ],
)
def test_an_event_reads_as_a_sentence(action: str, detail: dict[str, Any], sentence: str) -> None:
    assert describe(_event(action, detail), WHERE) == sentence
