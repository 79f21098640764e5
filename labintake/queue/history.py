"""An order's history in sentences: "Office answered by phone: “Type 2, no complications”",
"E11 replaced by E11.9", "Held: Diagnosis not billable (E11)".

Each `OrderEvent` keeps its raw detail (shown beside the sentence for whoever needs it);
`describe` turns it into words. Finding codes read as their labels (`finding_labels`), located
by the diagnosis code when the finding points at a diagnosis field.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from labintake.finding_labels import finding_label
from labintake.models.orders import OrderEvent
from labintake.queue.contacts import OUTCOME_LABELS, ContactOutcome

Sentence = Callable[[dict[str, Any], Mapping[str, str]], str]


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[str]:
    return [str(v) for v in value] if isinstance(value, list) else []


def _status(value: Any) -> str:
    return str(value or "").replace("_", " ")


def _findings(keys: list[str], where: Mapping[str, str]) -> str:
    """'DX_NOT_BILLABLE@DG1[1]-3' -> 'Diagnosis not billable (E11)'; several joined."""
    words = []
    for key in keys:
        code, _, location = key.partition("@")
        place = where.get(location, "")
        words.append(finding_label(code) + (f" ({place})" if place else ""))
    return ", ".join(words)


def _verified(detail: dict[str, Any], where: Mapping[str, str]) -> str:
    after = _status(detail.get("status_after"))
    added = _list(detail.get("added"))
    resolved = _list(detail.get("resolved"))
    still = _list(detail.get("still_raised"))
    parts = []
    if resolved:
        parts.append(f"resolved: {_findings(resolved, where)}")
    if added:
        parts.append(f"found: {_findings(added, where)}")
    if still:
        parts.append(f"still open: {_findings(still, where)}")
    outcome = {
        "held": "held",
        "verified": "verified, ready for release",
        "released": "released",
    }.get(after, after)
    return f"Checked, {outcome}" + (f"; {'; '.join(parts)}" if parts else "") + "."


def _contact(detail: dict[str, Any], where: Mapping[str, str]) -> str:
    after = _dict(detail.get("after"))
    channel = str(after.get("channel", ""))
    outcome = str(after.get("outcome", ""))
    answer = str(after.get("answer") or "")
    if not channel:
        return "Contact recorded."
    if outcome == ContactOutcome.ANSWERED:
        return (
            f"Office answered by {channel}: “{answer}”"
            if answer
            else (f"Office answered by {channel}.")
        )
    try:
        label = OUTCOME_LABELS[ContactOutcome(outcome)].lower()
    except ValueError:
        label = _status(outcome)
    follow = after.get("follow_up_on")
    return f"Tried the office by {channel}: {label}" + (
        f"; follow up on {follow}." if follow else "."
    )


def _diagnoses(detail: dict[str, Any], where: Mapping[str, str]) -> str:
    before = _list(_dict(detail.get("before")).get("diagnoses"))
    after = _list(_dict(detail.get("after")).get("diagnoses"))
    gone = [c for c in before if c not in after]
    new = [c for c in after if c not in before]
    if len(gone) == 1 and len(new) == 1:
        text = f"{gone[0]} replaced by {new[0]}"
    else:
        bits = []
        if gone:
            bits.append(f"{', '.join(gone)} removed")
        if new:
            bits.append(f"{', '.join(new)} added")
        text = "; ".join(bits) or "Diagnoses unchanged"
    return text + _citing(detail) + "."


def _citing(detail: dict[str, Any]) -> str:
    contact = detail.get("contact_id")
    return f", citing the office's answer (contact {contact})" if contact else ""


def _test_code(detail: dict[str, Any], where: Mapping[str, str]) -> str:
    after = _dict(detail.get("after"))
    return (
        f"Test {after.get('test_seq', '')} code set to {after.get('code', '')} "
        f"({after.get('system', '')}){_citing(detail)}."
    )


def _npi(detail: dict[str, Any], where: Mapping[str, str]) -> str:
    before = _dict(detail.get("before")).get("provider_npi") or "none"
    after = _dict(detail.get("after")).get("provider_npi") or "none"
    return f"Provider NPI {before} replaced by {after}{_citing(detail)}."


def _assignment(detail: dict[str, Any], where: Mapping[str, str]) -> str:
    assignee = _dict(detail.get("after")).get("assigned_to")
    return f"Assigned to {assignee}." if assignee else "Put back in the queue, unassigned."


def _taken_over(detail: dict[str, Any], where: Mapping[str, str]) -> str:
    return f"Took the order over from {_dict(detail.get('before')).get('assigned_to')}."


def _overridden(detail: dict[str, Any], where: Mapping[str, str]) -> str:
    codes = [finding_label(c) for c in _list(_dict(detail.get("before")).get("open"))]
    after = _dict(detail.get("after"))
    modifier = f" with modifier {after['modifier']}" if after.get("modifier") else ""
    return f"Holds overridden{modifier} ({', '.join(codes)}): {after.get('reason', '')}."


def _release_requested(detail: dict[str, Any], where: Mapping[str, str]) -> str:
    modifier = _dict(detail.get("after")).get("modifier")
    return "Released to the lab" + (f" with modifier {modifier}." if modifier else ".")


def _rejected(detail: dict[str, Any], where: Mapping[str, str]) -> str:
    return f"Rejected: {_dict(detail.get('after')).get('reason', '')}."


def _query(verb: str) -> Sentence:
    def sentence(detail: dict[str, Any], where: Mapping[str, str]) -> str:
        query = _dict(detail.get("after")).get("query_id") or _dict(detail.get("before")).get(
            "query_id", ""
        )
        return f"Query {query} {verb}." if query else f"Query {verb}."

    return sentence


def _fixed(text: str) -> Sentence:
    return lambda detail, where: text


SENTENCES: dict[str, Sentence] = {
    "received": lambda d, w: f"Received from the ordering system (message {d.get('control_id')}).",
    "verified": _verified,
    "re_verified": _verified,
    "verification_failed": lambda d, w: f"Could not be checked: {d.get('reason', '')}.",
    "claimed": _fixed("Claimed the order."),
    "assigned": _assignment,
    "taken_over": _taken_over,
    "contact_recorded": _contact,
    "contact_cap_reached": lambda d, w: (
        f"{_dict(d.get('after')).get('unanswered_attempts')} unanswered attempts: no more "
        "attempts; release with a written override or reject."
    ),
    "query_created": _query("written to the office"),
    "query_closed": _query("closed"),
    "query_cancelled": _query("cancelled"),
    "diagnosis_corrected": _diagnoses,
    "diagnosis_removed": _diagnoses,
    "test_code_corrected": _test_code,
    "provider_npi_corrected": _npi,
    "holds_overridden": _overridden,
    "release_requested": _release_requested,
    "released": lambda d, w: f"Sent to the lab system ({d.get('message_type', 'order')}).",
    "resent": _fixed("Sent to the lab system again."),
    "delivered": lambda d, w: f"The lab system accepted it ({d.get('ack_code', '')}).",
    "lis_refused": lambda d, w: f"The lab system refused it ({d.get('reason', '')}); held again.",
    "placer_reply_queued": _fixed("Reply to the ordering system queued."),
    "rejected": _rejected,
    "cancelled": _fixed("Cancelled by the ordering office."),
    "cancel_repeated": _fixed("Cancel repeated by the ordering office (already cancelled)."),
}


def describe(event: OrderEvent, where: Mapping[str, str]) -> str:
    """The event in a sentence; `where` maps a field location (DG1[1]-3) to what is there
    (the diagnosis code), to name the diagnosis a finding is about."""
    detail = _dict(event.detail)
    sentence = SENTENCES.get(event.action)
    if sentence is None:
        return event.action.replace("_", " ").capitalize() + "."
    try:
        return sentence(detail, where)
    except (KeyError, TypeError, ValueError):  # an older event of another shape
        return event.action.replace("_", " ").capitalize() + "."
