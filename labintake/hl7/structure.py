"""Order groups found by walking the segments of ORM^O01 and OML^O21 in order.

The walk does not trust any library's group model (multi-order OML is where they go wrong);
it follows the rules a lab sees in real feeds:

- ORC opens an order group. Every OBR after it, up to the next ORC, is a test of that order:
  one ORC = one order with one or more tests.
- An OBR with no ORC before it (or after an OBR that had none) opens its own order group.
- TQ1 belongs to the order group it follows; NTE, DG1, OBX, SPM belong to the nearest OBR
  above them, or to the order group when no OBR came yet in the group.
- Before the first ORC/OBR, DG1 and NTE are message level (Epic sends DG1 there) and apply
  to every order; PID, PV1, IN1 are read wherever they are.
- Z-segments and segments an order does not need (PD1, NK1, PV2, IN2, IN3, GT1, AL1, SFT,
  TCD, TQ2, CTI, BLG, FT1, SAC, ROL...) are passed over.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from labintake.errors import OrderReadError
from labintake.hl7.segments import Segment, SegmentList


@dataclass(slots=True)
class TestGroup:
    obr: Segment
    notes: list[Segment] = field(default_factory=list)
    diagnoses: list[Segment] = field(default_factory=list)
    observations: list[Segment] = field(default_factory=list)
    specimens: list[Segment] = field(default_factory=list)


@dataclass(slots=True)
class OrderGroup:
    index: int
    orc: Segment | None
    timings: list[Segment] = field(default_factory=list)  # TQ1
    notes: list[Segment] = field(default_factory=list)
    diagnoses: list[Segment] = field(default_factory=list)
    observations: list[Segment] = field(default_factory=list)  # OBX before any OBR
    tests: list[TestGroup] = field(default_factory=list)

    @property
    def first(self) -> Segment:
        return self.orc if self.orc is not None else self.tests[0].obr


@dataclass(slots=True)
class MessageParts:
    msh: Segment
    pid: Segment | None = None
    pv1: Segment | None = None
    insurances: list[Segment] = field(default_factory=list)
    diagnoses: list[Segment] = field(default_factory=list)  # message level
    notes: list[Segment] = field(default_factory=list)  # message and patient level
    groups: list[OrderGroup] = field(default_factory=list)
    remarks: list[str] = field(default_factory=list)


def find_groups(segments: SegmentList) -> MessageParts:
    """Sort the segments of one order message into its patient, insurance and order groups."""
    parts = MessageParts(msh=segments.msh, remarks=list(segments.remarks))
    group: OrderGroup | None = None
    test: TestGroup | None = None
    for segment in segments.segments[1:]:
        name = segment.name
        if name == "PID":
            if parts.pid is not None:
                where = f"PID[{segment.occurrence}]"
                raise OrderReadError(
                    f"{where}: a second patient in one message is not supported",
                    location=where,
                    error_code="100",
                )
            parts.pid = segment
        elif name == "PV1":
            parts.pv1 = parts.pv1 or segment
        elif name == "IN1":
            parts.insurances.append(segment)
        elif name == "ORC":
            group = OrderGroup(index=len(parts.groups) + 1, orc=segment)
            parts.groups.append(group)
            test = None
        elif name == "OBR":
            # Only an ORC gathers several OBRs; an OBR without one is an order of its own.
            if group is None or group.orc is None:
                group = OrderGroup(index=len(parts.groups) + 1, orc=None)
                parts.groups.append(group)
            test = TestGroup(obr=segment)
            group.tests.append(test)
        elif name == "TQ1":
            if group is None:
                parts.remarks.append(f"{segment.ref} before any order group, ignored")
            else:
                group.timings.append(segment)
        elif name in ("NTE", "DG1", "OBX", "SPM"):
            _attach(parts, group, test, segment)
    return parts


def _attach(
    parts: MessageParts, group: OrderGroup | None, test: TestGroup | None, segment: Segment
) -> None:
    name = segment.name
    if test is not None:
        {
            "NTE": test.notes,
            "DG1": test.diagnoses,
            "OBX": test.observations,
            "SPM": test.specimens,
        }[name].append(segment)
    elif group is not None:
        if name == "SPM":
            parts.remarks.append(f"{segment.ref} before any OBR of its order, ignored")
            return
        {"NTE": group.notes, "DG1": group.diagnoses, "OBX": group.observations}[name].append(
            segment
        )
    elif name == "DG1":
        parts.diagnoses.append(segment)
    elif name == "NTE":
        parts.notes.append(segment)
    else:
        parts.remarks.append(f"{segment.ref} before any order group, ignored")
