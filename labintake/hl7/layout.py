"""The outbound message layout, read once from hl7apy's reference data per (type, version).

hl7apy defines the messages: for the ORM^O01 / OML^O21 structure of the configured version it
tells where each segment the release builder writes sits (its group path), and for each
field its position, datatype, number of components, repetition, whether it is required, its
maximum length (when the reference data gives one) and whether the version withdrew it.
:mod:`labintake.hl7.order_builder` serialises orders with that layout instead of building an
hl7apy element tree per order; the tree builder (`tests/hl7_tree_builder.py`)
stays as the reference the fast writer is tested against.

Pure: reference data in, frozen values out; cached per (structure, version).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from hl7apy import load_reference
from hl7apy.exceptions import ChildNotFound, InvalidName, UnsupportedVersion

from labintake.errors import ConfigurationError

# The segments the builder writes, and the group (by name suffix) each must sit under.
WRITTEN_SEGMENTS = ("MSH", "PID", "IN1", "ORC", "OBR", "DG1", "FT1")


@dataclass(frozen=True, slots=True)
class FieldSpec:
    name: str  # e.g. "OBR_46"
    position: int  # 1-based
    datatype: str  # "CE", "XCN", "ST"... ("WD" when withdrawn)
    components: int  # 1 for a field without components
    repeatable: bool
    required: bool
    max_length: int | None

    @property
    def withdrawn(self) -> bool:
        return self.datatype == "WD"


@dataclass(frozen=True, slots=True)
class SegmentSpec:
    name: str
    path: tuple[str, ...]  # groups from the message root down to the segment
    repeatable: bool
    fields: dict[int, FieldSpec]  # by position (a version may skip positions)

    def field(self, position: int) -> FieldSpec | None:
        return self.fields.get(position)

    @property
    def gaps(self) -> tuple[int, ...]:
        """Positions the reference data leaves out before its last field (v2.6 FT1-8/9...)."""
        return tuple(p for p in range(1, max(self.fields, default=0)) if p not in self.fields)


@dataclass(frozen=True, slots=True)
class MessageLayout:
    structure: str  # "ORM_O01"
    version: str
    segments: dict[str, SegmentSpec]

    def has_segment(self, name: str) -> bool:
        return name in self.segments

    def field(self, name: str) -> FieldSpec | None:
        """The spec of field `name` ("FT1_26"), None when this version has no such field."""
        segment_name, _, number = name.partition("_")
        segment = self.segments.get(segment_name)
        return segment.field(int(number)) if segment is not None else None

    def require(self, name: str, *, components: int = 1, repeated: bool = False) -> FieldSpec:
        """The spec of a field the builder writes with `components` components (repeated or
        not); ConfigurationError when this version cannot carry it."""
        spec = self.field(name)
        where = f"{self.structure} v{self.version}"
        if spec is None:
            raise ConfigurationError(f"{where} has no field {name.replace('_', '-')}")
        if spec.withdrawn:
            raise ConfigurationError(f"{where} withdrew field {name.replace('_', '-')}")
        if components > spec.components:
            raise ConfigurationError(
                f"{where}: {name.replace('_', '-')} ({spec.datatype}) has {spec.components} "
                f"components, {components} needed"
            )
        if repeated and not spec.repeatable:
            raise ConfigurationError(f"{where}: {name.replace('_', '-')} does not repeat")
        return spec


def _field_spec(entry: Any) -> FieldSpec:
    name, definition, cardinality = entry[0], entry[1], entry[2]
    kind, children, datatype = definition[0], definition[1], definition[2]
    max_length = definition[5] if len(definition) > 5 else -1
    return FieldSpec(
        name=name,
        position=int(str(name).rsplit("_", 1)[1]),
        datatype=str(datatype),
        components=len(children) if kind == "sequence" and children else 1,
        repeatable=cardinality[1] == -1 or cardinality[1] > 1,
        required=cardinality[0] >= 1,
        max_length=int(max_length) if isinstance(max_length, int) and max_length > 0 else None,
    )


def _segment_spec(name: str, path: tuple[str, ...], cardinality: Any, version: str) -> SegmentSpec:
    reference = load_reference(name, "Segment", version)
    fields = {spec.position: spec for spec in map(_field_spec, reference[1])}
    return SegmentSpec(
        name=name,
        path=path,
        repeatable=cardinality[1] == -1 or cardinality[1] > 1,
        fields=fields,
    )


def _placements(reference: Any, path: tuple[str, ...]) -> list[tuple[tuple[str, ...], str, Any]]:
    """(group path, segment name, cardinality) of every segment, depth first."""
    found: list[tuple[tuple[str, ...], str, Any]] = []
    for child in reference[1]:
        name, definition, cardinality, kind = child[0], child[1], child[2], child[3]
        if kind == "GRP":
            found.extend(_placements(definition, (*path, name)))
        elif kind == "SEG":
            found.append((path, name, cardinality))
    return found


def _expected_parent(structure: str, segment: str) -> tuple[str, ...]:
    """The group path the builder puts `segment` under (ORM's OBR choice group aside)."""
    patient = f"{structure}_PATIENT"
    order = f"{structure}_ORDER"
    detail = f"{structure}_ORDER_DETAIL" if structure == "ORM_O01" else ""
    request = f"{structure}_OBSERVATION_REQUEST" if structure == "OML_O21" else ""
    return {
        "MSH": (),
        "PID": (patient,),
        "IN1": (patient, f"{structure}_INSURANCE"),
        "ORC": (order,),
        "OBR": (order, detail or request),
        "DG1": (order, detail or request),
        "FT1": (order,),
    }[segment]


@lru_cache(maxsize=32)
def message_layout(message_type: str, version: str) -> MessageLayout:
    """The layout of `message_type` ("ORM^O01") in `version`, from hl7apy's reference data.
    ConfigurationError when hl7apy does not define the structure in that version."""
    structure = message_type.replace("^", "_")
    try:
        reference = load_reference(structure, "Message", version)
    except (ChildNotFound, InvalidName, UnsupportedVersion) as exc:
        raise ConfigurationError(f"HL7 v{version} has no {message_type} message") from exc
    segments: dict[str, SegmentSpec] = {}
    for path, name, cardinality in _placements(reference, ()):
        if name not in WRITTEN_SEGMENTS or name in segments:
            continue
        expected = _expected_parent(structure, name)
        # ORM's OBR sits one group deeper, in a choice group (..._CHOICE or ..._SUPPGRP);
        # OML v2.4 has its order groups inside ..._ORDER_GENERAL.
        if name == "OBR" and structure == "ORM_O01":
            matches = path[-3:-1] == expected and path[-1].endswith(("_CHOICE", "_SUPPGRP"))
        else:
            matches = path[len(path) - len(expected) :] == expected
        if matches:
            segments[name] = _segment_spec(name, path, cardinality, version)
    return MessageLayout(structure=structure, version=version, segments=segments)
