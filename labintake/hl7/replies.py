"""Order responses to the placer as ER7: ORR^O02 for ORM senders, ORL^O22 for OML senders.

Pure: the facts of the original message and order in, bytes out. Which orders get one and
where it goes is :mod:`labintake.release.replies`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from hl7apy import get_default_encoding_chars

from labintake.hl7.escaping import esc, escapes_for

# MSH-2: the version's default encoding characters (from v2.7 with the truncation "#").
_MSH2_ORDER = ("COMPONENT", "REPETITION", "ESCAPE", "SUBCOMPONENT", "TRUNCATION")


@dataclass(frozen=True, slots=True)
class ReplyFacts:
    original_control_id: str
    original_type: str  # ORM^O01 | OML^O21
    version: str
    placer_application: str
    placer_facility: str
    placer_order_number: str
    filler_order_number: str
    patient_mrn: str
    order_control: str  # UA | CR
    reason: str


def build_reply(facts: ReplyFacts, control_id: str, now: datetime, our_app: str) -> bytes:
    """ORR^O02 (to an ORM sender) or ORL^O22 (to an OML sender), as ER7 bytes.

    Written straight to ER7, each value escaped once (:mod:`labintake.hl7.escaping`):
    hl7apy escapes the backslashes of ``\\Xhh\\`` sequences again on output, so a reason
    with a line break reached the placer as ``\\E\\X0D\\E\\``. The segments are those
    hl7apy writes for both structures: MSH, MSA, NTE (the reason), PID, ORC.
    """
    if facts.original_type.startswith("OML"):
        message_type, structure = "ORL^O22", "ORL_O22"
    else:
        message_type, structure = "ORR^O02", "ORR_O02"
    version = facts.version or "2.5.1"
    table = escapes_for(version)
    defaults = get_default_encoding_chars(version)
    encoding = "".join(defaults.get(key, "") for key in _MSH2_ORDER)
    segments = [
        [
            "MSH",
            encoding,
            esc(our_app, table),
            "",
            esc(facts.placer_application, table),
            esc(facts.placer_facility, table),
            now.strftime("%Y%m%d%H%M%S+0000"),
            "",
            f"{message_type}^{structure}",
            esc(control_id, table),
            "P",
            version,
        ],
        ["MSA", "AA", esc(facts.original_control_id, table)],
    ]
    if facts.reason:
        segments.append(["NTE", "", "", esc(facts.reason, table)])
    segments.append(["PID", "1", "", esc(facts.patient_mrn, table)])
    placer = [
        esc(facts.placer_order_number, table),
        esc(facts.placer_facility.split("^", 1)[0], table),
    ]
    segments.append(
        [
            "ORC",
            facts.order_control,
            "^".join(placer).rstrip("^"),
            esc(facts.filler_order_number, table),
        ]
    )
    text = "\r".join("|".join(fields).rstrip("|") for fields in segments)
    return (text + "\r").encode("utf-8")
