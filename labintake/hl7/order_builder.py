"""Outbound orders to the LIS: ORM^O01 or OML^O21, per the LIS profile.

Pure: an :class:`OutboundOrder` (values read from the database by the outbox) and a
:class:`LisProfile` (from settings) in, HL7 bytes out. Where each code goes:

- OBR-4: the first triplet is `order_code` (the lab catalog's local code, the LOINC order
  code, or the CPT/HCPCS code), the alternate triplet is `alternate_code` (or nothing);
- DG1 (one per final active diagnosis) inside each test's OBR group, DG1-6 ``F``;
- FT1 per test when `billing_codes` is on: FT1-25 CPT/HCPCS, FT1-26 the modifiers (GA when
  an ABN is on file, QW, 91...), FT1-19 the diagnoses; from v2.5 the modifiers also go in
  OBR-46 (placer supplemental service information).

hl7apy defines the message: once per profile, :func:`message_plan` reads the structure of
the configured type and version from hl7apy's reference data (:mod:`labintake.hl7.layout`)
and checks that every field written exists there, with enough components and repetition
where it is repeated (a profile the version cannot carry is a ConfigurationError at start-up);
fields the version withdrew are left out. Each order is then written straight to ER7 from
that plan, about a thousand times faster than an hl7apy element tree per order. The element
tree builder (`tests/hl7_tree_builder.py`) writes the same bytes and is what the
tests prove this writer against.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from functools import lru_cache

from hl7apy import get_default_encoding_chars

from labintake.errors import ConfigurationError
from labintake.hl7.escaping import ESCAPES, components, esc, escapes_for, version_tuple
from labintake.hl7.layout import MessageLayout, message_layout

__all__ = [
    "CHARSET",
    "CODE_CHOICES",
    "MESSAGE_TYPES",
    "SYSTEM_NAMES",
    "LisProfile",
    "MessagePlan",
    "OutboundDiagnosis",
    "OutboundOrder",
    "OutboundTest",
    "build_order_message",
    "components",
    "diagnosis_value",
    "esc",
    "escapes_for",
    "message_plan",
    "modifier_value",
    "provider",
    "service_identifier",
    "ts",
    "version_tuple",
]

MESSAGE_TYPES = ("ORM^O01", "OML^O21")
CODE_CHOICES = ("local", "loinc", "cpt")
SYSTEM_NAMES = {"local": "L", "loinc": "LN", "cpt": "C4"}
CHARSET = "UNICODE UTF-8"


@dataclass(frozen=True, slots=True)
class LisProfile:
    """How one LIS wants its orders."""

    message_type: str = "ORM^O01"
    version: str = "2.5.1"
    sending_application: str = "LABINTAKE"
    sending_facility: str = "LAB"
    receiving_application: str = "LIS"
    receiving_facility: str = "LAB"
    order_code: str = "local"
    alternate_code: str = "loinc"
    billing_codes: bool = True

    def __post_init__(self) -> None:
        if self.message_type not in MESSAGE_TYPES:
            raise ConfigurationError(f"LIS message type must be one of {MESSAGE_TYPES}")
        if self.message_type == "OML^O21" and version_tuple(self.version) < (2, 4):
            raise ConfigurationError("OML^O21 exists from HL7 v2.4; choose ORM^O01 or v2.4+")
        if self.order_code not in CODE_CHOICES:
            raise ConfigurationError(f"LIS order code must be one of {CODE_CHOICES}")
        if self.alternate_code not in (*CODE_CHOICES, "none"):
            raise ConfigurationError(f"LIS alternate code must be one of {CODE_CHOICES} or none")
        message_plan(self)  # the version must carry what this profile writes


@dataclass(frozen=True, slots=True)
class OutboundTest:
    seq: int
    local_code: str
    text: str = ""
    loinc: str = ""
    cpt: str = ""
    units: int = 1
    modifiers: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class OutboundDiagnosis:
    code: str
    text: str = ""


@dataclass(frozen=True, slots=True)
class OutboundOrder:
    """An order as the LIS receives it: resolved codes, final diagnoses."""

    order_id: int
    placer_order_number: str
    placer_facility: str
    order_control: str = "NW"
    patient_mrn: str = ""
    patient_family_name: str = ""
    patient_given_name: str = ""
    patient_birth_date: date | None = None
    patient_sex: str = ""
    payer_company_id: str = ""
    payer_company_name: str = ""
    payer_plan_id: str = ""
    provider_npi: str = ""
    provider_family_name: str = ""
    provider_given_name: str = ""
    office_name: str = ""
    date_of_service: date | None = None
    ordered_at: datetime | None = None
    tests: tuple[OutboundTest, ...] = ()
    diagnoses: tuple[OutboundDiagnosis, ...] = ()
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def filler_order_number(self) -> str:
        return f"LI{self.order_id}"


def ts(value: datetime | date | None) -> str:
    """HL7 DTM text: a datetime to the second with a literal +0000 (it is UTC), a date to
    the day. Formatted with integer fields rather than strftime (a third of the cost); a year
    before 1000 goes through strftime, whose %Y does not pad it."""
    if value is None:
        return ""
    if value.year < 1000:
        if isinstance(value, datetime):
            return value.strftime("%Y%m%d%H%M%S+0000")
        return value.strftime("%Y%m%d")
    if isinstance(value, datetime):
        return (
            f"{value.year}{value.month:02d}{value.day:02d}"
            f"{value.hour:02d}{value.minute:02d}{value.second:02d}+0000"
        )
    return f"{value.year}{value.month:02d}{value.day:02d}"


# The last `now` formatted: a release batch builds every message with the same one.
_last_now: tuple[datetime | None, str] = (None, "")


def _now_text(now: datetime) -> str:
    """`ts(now)`, formatted once per batch (compared by identity, the object kept)."""
    global _last_now
    seen, text = _last_now
    if now is not seen:
        text = ts(now)
        _last_now = (now, text)  # one tuple: a thread reading it sees a matching pair
    return text


def _code_of(test: OutboundTest, choice: str) -> tuple[str, str, str]:
    code = test.local_code if choice == "local" else test.loinc if choice == "loinc" else test.cpt
    return (code, test.text if code else "", SYSTEM_NAMES[choice] if code else "")


def _identifier(test: OutboundTest, first: str, second: str, table: dict[int, str]) -> str:
    """OBR-4 with the code choices resolved beforehand (`second` "" for no alternate)."""
    code = _code_of(test, first)
    if not code[0]:  # the configured code is missing for this test: fall back to local
        code = _code_of(test, "local")
    if not second:
        return components(*code, table=table)
    return components(*code, *_code_of(test, second), table=table)


def _alternate(profile: LisProfile) -> str:
    """The alternate code choice written after the first, or "" for none."""
    if profile.alternate_code in ("none", profile.order_code):
        return ""
    return profile.alternate_code


def service_identifier(test: OutboundTest, profile: LisProfile) -> str:
    """OBR-4: the configured code first, the alternate after it (CWE triplets)."""
    table = escapes_for(profile.version)
    return _identifier(test, profile.order_code, _alternate(profile), table)


def provider(order: OutboundOrder, table: dict[int, str] = ESCAPES) -> str:
    """ORC-12 / OBR-16 / FT1-21: NPI, family and given name, assigning authority NPI."""
    if not (order.provider_npi or order.provider_family_name):
        return ""
    return components(
        order.provider_npi,
        order.provider_family_name,
        order.provider_given_name,
        "",
        "",
        "",
        "",
        "",
        "NPI" if order.provider_npi else "",
        table=table,
    )


def diagnosis_value(diagnosis: OutboundDiagnosis, table: dict[int, str] = ESCAPES) -> str:
    return components(diagnosis.code, diagnosis.text, "I10", table=table)


def modifier_value(modifier: str, table: dict[int, str] = ESCAPES) -> str:
    return components(modifier, "", "CPT4", table=table)


# Fields the builder writes: name -> (components used, repeated, may be left out when the
# version withdrew it). Those that cannot be left out make a ConfigurationError instead.
_WRITTEN: dict[str, tuple[int, bool, bool]] = {
    "MSH_3": (1, False, False),
    "MSH_4": (1, False, False),
    "MSH_5": (1, False, False),
    "MSH_6": (1, False, False),
    "MSH_7": (1, False, False),
    "MSH_9": (3, False, False),
    "MSH_10": (1, False, False),
    "MSH_11": (1, False, False),
    "MSH_12": (1, False, False),
    "MSH_18": (1, False, True),
    "PID_1": (1, False, True),
    "PID_3": (5, False, False),
    "PID_5": (2, False, False),
    "PID_7": (1, False, True),
    "PID_8": (1, False, True),
    "IN1_1": (1, False, True),
    "IN1_2": (1, False, True),
    "IN1_3": (1, False, False),
    "IN1_4": (1, False, True),
    "ORC_1": (1, False, False),
    "ORC_2": (2, False, False),
    "ORC_3": (2, False, False),
    "ORC_9": (1, False, True),
    "ORC_12": (9, False, True),
    "ORC_21": (1, False, True),
    "OBR_1": (1, False, True),
    "OBR_2": (2, False, False),
    "OBR_3": (2, False, False),
    "OBR_4": (6, False, False),
    "OBR_6": (1, False, True),
    "OBR_16": (9, False, True),
    "OBR_46": (3, True, True),
    "DG1_1": (1, False, True),
    "DG1_2": (1, False, True),
    "DG1_3": (3, False, False),
    "DG1_4": (1, False, True),
    "DG1_6": (1, False, True),
    "FT1_1": (1, False, True),
    "FT1_4": (1, False, True),
    "FT1_6": (1, False, True),
    "FT1_7": (3, False, True),
    "FT1_10": (1, False, True),
    "FT1_19": (3, True, True),
    "FT1_21": (9, False, True),
    "FT1_25": (3, False, False),
    "FT1_26": (3, True, True),
}


@dataclass(frozen=True, slots=True)
class MessagePlan:
    """What one profile writes, checked against hl7apy's layout of its type and version."""

    layout: MessageLayout
    msh_head: str  # "MSH|^~\\&|app|facility|app|facility|"
    msh_tail: str  # "|type^event^structure|" ... control id goes between
    msh_end: str  # "|P|version...|UNICODE UTF-8"
    fields: frozenset[str]  # the fields written (version-dependent ones included or not)
    escapes: dict[int, str]  # str.translate table for values

    def writes(self, name: str) -> bool:
        return name in self.fields


@lru_cache(maxsize=32)
def message_plan(profile: LisProfile) -> MessagePlan:
    """The plan for `profile`, from hl7apy's reference data (cached per profile)."""
    layout = message_layout(profile.message_type, profile.version)
    version = version_tuple(profile.version)
    wanted = {
        name
        for name in _WRITTEN
        if not (name == "ORC_21" and version < (2, 5))
        and not (name == "OBR_46" and version < (2, 5))
        and not (name == "DG1_4" and version >= (2, 5))
        and not (name.startswith("FT1_") and not profile.billing_codes)
    }
    segments = {name.split("_", 1)[0] for name in wanted}
    for segment in sorted(segments):
        if not layout.has_segment(segment):
            hint = "; set LIS_BILLING_CODES=false" if segment == "FT1" else ""
            raise ConfigurationError(
                f"{profile.message_type} v{profile.version} has no {segment} segment where "
                f"the order goes{hint}"
            )
    written: set[str] = set()
    for name in sorted(wanted):
        count, repeated, optional = _WRITTEN[name]
        spec = layout.field(name)
        if optional and spec is not None and spec.withdrawn:
            continue
        layout.require(name, components=count, repeated=repeated)
        written.add(name)
    structure = layout.structure
    chars = get_default_encoding_chars(profile.version)  # v2.7+ adds the truncation char
    encoding = "".join(
        chars.get(key, "")
        for key in ("COMPONENT", "REPETITION", "ESCAPE", "SUBCOMPONENT", "TRUNCATION")
    )
    table = escapes_for(profile.version)
    msh_head = f"MSH|{encoding}|" + "|".join(
        esc(value, table)
        for value in (
            profile.sending_application,
            profile.sending_facility,
            profile.receiving_application,
            profile.receiving_facility,
        )
    )
    msh_tail = f"||{profile.message_type}^{structure}|"
    msh_end = f"|P|{profile.version}"
    if "MSH_18" in written:
        msh_end += "||||||" + CHARSET
    return MessagePlan(layout, msh_head + "|", msh_tail, msh_end, frozenset(written), table)


def _segment(name: str, values: list[tuple[int, str]]) -> str:
    """`name` with `values` (position, ER7 text) in ascending positions; as in hl7apy, a field
    that was set counts even when empty, so the segment runs to the last field set."""
    fields = [""] * values[-1][0]
    for position, value in values:
        fields[position - 1] = value
    return name + "|" + "|".join(fields)


@dataclass(frozen=True, slots=True)
class _Template:
    """What `build_order_message` asks of a profile on every order, worked out once: the
    fields the version carries, the code choices of OBR-4, DG1-2's fixed value."""

    plan: MessagePlan
    first: str
    second: str
    pid_7: bool
    pid_8: bool
    orc_9: bool
    orc_21: bool
    obr_6: bool
    obr_46: bool
    ft1: bool


@lru_cache(maxsize=32)
def _template(profile: LisProfile) -> _Template:
    plan = message_plan(profile)
    writes = plan.fields
    return _Template(
        plan,
        profile.order_code,
        _alternate(profile),
        "PID_7" in writes,
        "PID_8" in writes,
        "ORC_9" in writes,
        "ORC_21" in writes,
        "OBR_6" in writes,
        "OBR_46" in writes,
        "FT1_25" in writes,
    )


@lru_cache(maxsize=256)
def _modifier(modifier: str, table_version: str) -> str:
    """A modifier's CWE (few distinct ones: GA, QW, 91...), per escape table."""
    return modifier_value(modifier, escapes_for(table_version))


def build_order_message(
    order: OutboundOrder, profile: LisProfile, control_id: str, now: datetime
) -> bytes:
    """The order as ER7 bytes (UTF-8, segments ended by CR) with MSH-10 `control_id`."""
    template = _template(profile)
    plan = template.plan
    writes = plan.fields
    table = plan.escapes
    stamp = _now_text(now)
    segments = [plan.msh_head + stamp + plan.msh_tail + esc(control_id, table) + plan.msh_end]

    pid: list[tuple[int, str]] = [(1, "1")]
    if order.patient_mrn:
        pid.append(
            (3, components(order.patient_mrn, "", "", order.placer_facility, "MR", table=table))
        )
    pid.append((5, components(order.patient_family_name, order.patient_given_name, table=table)))
    if order.patient_birth_date and template.pid_7:
        pid.append((7, ts(order.patient_birth_date)))
    if order.patient_sex and template.pid_8:
        pid.append((8, esc(order.patient_sex, table)))
    segments.append(_segment("PID", pid))
    if order.payer_company_id or order.payer_company_name:
        in1 = [
            (1, "1"),
            (2, esc(order.payer_plan_id, table) or esc(order.payer_company_id, table)),
            (3, esc(order.payer_company_id, table)),
        ]
        if order.payer_company_name:
            in1.append((4, esc(order.payer_company_name, table)))
        segments.append(_segment("IN1", in1))

    who = provider(order, table)
    placer = components(order.placer_order_number, order.placer_facility, table=table)
    filler = components(order.filler_order_number, profile.sending_facility, table=table)
    ordered_at = ts(order.ordered_at)
    diagnoses = [diagnosis_value(d, table) for d in order.diagnoses]
    dg1_segments = _dg1_segments(order, diagnoses, writes, table)
    ft1_date = ts(order.date_of_service) or stamp
    orc_tail: list[tuple[int, str]] = []
    if ordered_at and template.orc_9:
        orc_tail.append((9, ordered_at))
    if who:
        orc_tail.append((12, who))
    if order.office_name and template.orc_21:
        orc_tail.append((21, esc(order.office_name, table)))
    orc = _segment(
        "ORC", [(1, esc(order.order_control, table) or "NW"), (2, placer), (3, filler), *orc_tail]
    )
    # The fields after OBR-4 are the same for every test but OBR-46.
    obr_tail: list[tuple[int, str]] = []
    if ordered_at and template.obr_6:
        obr_tail.append((6, ordered_at))
    if who:
        obr_tail.append((16, who))
    version = profile.version
    for test in order.tests:
        segments.append(orc)
        identifier = _identifier(test, template.first, template.second, table)
        modifiers = "~".join([_modifier(m, version) for m in test.modifiers])
        obr = [(1, str(test.seq)), (2, placer), (3, filler), (4, identifier), *obr_tail]
        if modifiers and template.obr_46:
            obr.append((46, modifiers))
        segments.append(_segment("OBR", obr))
        segments.extend(dg1_segments)
        if test.cpt and template.ft1:
            ft1 = [(1, str(test.seq)), (4, ft1_date), (6, "CG")]
            ft1.append((7, components(test.local_code, test.text, "L", table=table)))
            ft1.append((10, str(test.units)))
            if diagnoses:
                ft1.append((19, "~".join(diagnoses)))
            if who:
                ft1.append((21, who))
            ft1.append((25, components(test.cpt, "", "C4", table=table)))
            if modifiers:
                ft1.append((26, modifiers))
            segments.append(_segment("FT1", ft1))
    return ("\r".join(segments) + "\r").encode("utf-8")


def _dg1_segments(
    order: OutboundOrder, values: list[str], writes: frozenset[str], table: dict[int, str]
) -> list[str]:
    """One DG1 per diagnosis (the same in every test's group)."""
    result = []
    for index, (diagnosis, value) in enumerate(zip(order.diagnoses, values, strict=True)):
        dg1 = [(1, str(index + 1))]
        if "DG1_2" in writes:
            dg1.append((2, "I10"))
        dg1.append((3, value))
        if diagnosis.text and "DG1_4" in writes:
            dg1.append((4, esc(diagnosis.text, table)))
        dg1.append((6, "F"))
        result.append(_segment("DG1", dg1))
    return result
