"""What the order page derives from an order's detail: the history in sentences, the
diagnoses that fail, and where focus goes when the page opens (the next thing to do)."""

from __future__ import annotations

from labintake.finding_labels import finding_label
from labintake.models.orders import OrderEvent
from labintake.queue.detail import OrderDetail
from labintake.queue.history import describe
from labintake.statuses import QUEUE_STATUSES, FindingState, OrderStatus

# Findings a diagnosis correction settles (the correction form offers the failing code).
DIAGNOSIS_HOLDS = ("DX_INVALID", "DX_NOT_BILLABLE", "DX_NOT_EFFECTIVE", "DX_EXCLUDES1")


def failing_diagnoses(detail: OrderDetail) -> dict[str, list[str]]:
    """Field location of a diagnosis -> what its open findings say, in words."""
    failing: dict[str, list[str]] = {}
    for finding in detail.findings:
        if finding.state == FindingState.OPEN and finding.location:
            failing.setdefault(finding.location, []).append(finding_label(finding.code))
    return failing


def history_lines(detail: OrderDetail) -> list[tuple[OrderEvent, str]]:
    """The history newest first, each event with its sentence."""
    where: dict[str, str] = {}
    for dx in detail.diagnoses:  # the code first sent at each place, before any correction
        where.setdefault(dx.location, dx.code)
    return [(e, describe(e, where)) for e in reversed(detail.events)]


def next_step(detail: OrderDetail) -> str:
    """Where focus lands when the order opens, after each action:

    - "answer": nothing answered yet, so the office's answer is the next thing to record;
    - "new_code": a diagnosis fails and an answer can be cited: the code to replace it with;
    - "finding": another hold is open: the first one, to read what it needs;
    - "next": verified, no hold left: the release worker sends it to the lab by itself, so
      the next order (Release stays on the page for a coder who wants it sent now);
    - "release": in the queue with no open hold (the worker takes verified orders only): the
      Release button;
    - "": nothing to do here (released, rejected...)."""
    status = detail.order.status
    if status == OrderStatus.VERIFIED:
        return "next"
    if status not in QUEUE_STATUSES:
        return ""
    holds = detail.open_holds
    if not holds:
        return "release"
    if not detail.answered_contacts:
        return "answer"
    active = {dx.location for dx in detail.diagnoses if dx.active}
    if any(f.code in DIAGNOSIS_HOLDS and f.location in active for f in holds):
        return "new_code"
    return "finding"
