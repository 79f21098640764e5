"""Outbound orders to the LIS, built with hl7apy: ORM^O01 or OML^O21, per the LIS profile.

Pure: an :class:`OutboundOrder` (values read from the database by the outbox) and a
:class:`LisProfile` (from settings) in, HL7 bytes out. Where each code goes:

- OBR-4: the first triplet is `order_code` (the lab catalog's local code, the LOINC order
  code, or the CPT/HCPCS code), the alternate triplet is `alternate_code` (or nothing);
- DG1 (one per final active diagnosis) inside each test's OBR group, DG1-6 ``F``;
- FT1 per test when `billing_codes` is on: FT1-25 CPT/HCPCS, FT1-26 the modifiers (GA when
  an ABN is on file, QW, 91...), FT1-19 the diagnoses; from v2.5 the modifiers also go in
  OBR-46 (placer supplemental service information).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

import hl7
from hl7apy.consts import VALIDATION_LEVEL
from hl7apy.core import Group, Message

from labintake.errors import ConfigurationError

MESSAGE_TYPES = ("ORM^O01", "OML^O21")
CODE_CHOICES = ("local", "loinc", "cpt")
SYSTEM_NAMES = {"local": "L", "loinc": "LN", "cpt": "C4"}
CHARSET = "UNICODE UTF-8"

# python-hl7 knows the escape rules of the default encoding characters.
_ESCAPER = hl7.parse("MSH|^~\\&|")


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
        if self.message_type == "OML^O21" and _version_tuple(self.version) < (2, 4):
            raise ConfigurationError("OML^O21 exists from HL7 v2.4; choose ORM^O01 or v2.4+")
        if self.order_code not in CODE_CHOICES:
            raise ConfigurationError(f"LIS order code must be one of {CODE_CHOICES}")
        if self.alternate_code not in (*CODE_CHOICES, "none"):
            raise ConfigurationError(f"LIS alternate code must be one of {CODE_CHOICES} or none")


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


def _version_tuple(version: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in version.split("."))
    except ValueError as exc:
        raise ConfigurationError(f"not an HL7 version: {version!r}") from exc


def esc(value: str) -> str:
    """One leaf value with the HL7 escape sequences for the default encoding characters."""
    return str(_ESCAPER.escape(value)) if value else ""


def _components(*values: str) -> str:
    text = "^".join(esc(v) for v in values)
    return text.rstrip("^")


def _ts(value: datetime | date | None) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.strftime("%Y%m%d%H%M%S+0000")
    return value.strftime("%Y%m%d")


def _code_of(test: OutboundTest, choice: str) -> tuple[str, str, str]:
    code = {"local": test.local_code, "loinc": test.loinc, "cpt": test.cpt}[choice]
    return (code, test.text if code else "", SYSTEM_NAMES[choice] if code else "")


def service_identifier(test: OutboundTest, profile: LisProfile) -> str:
    """OBR-4: the configured code first, the alternate after it (CWE triplets)."""
    first = _code_of(test, profile.order_code)
    if not first[0]:  # the configured code is missing for this test: fall back to local
        first = _code_of(test, "local")
    second: tuple[str, str, str] = ("", "", "")
    if profile.alternate_code != "none" and profile.alternate_code != profile.order_code:
        second = _code_of(test, profile.alternate_code)
    return _components(*first, *second)


def _provider(order: OutboundOrder) -> str:
    if not (order.provider_npi or order.provider_family_name):
        return ""
    return _components(
        order.provider_npi,
        order.provider_family_name,
        order.provider_given_name,
        "",
        "",
        "",
        "",
        "",
        "NPI" if order.provider_npi else "",
    )


def _structure(profile: LisProfile) -> str:
    return profile.message_type.replace("^", "_")


def _choice_group(parent: Group) -> Group:
    """ORM's OBR choice group: named ..._CHOICE in v2.3-2.4 and ..._OBRRQD..._SUPPGRP later."""
    for child_name in parent.structure_by_name:
        if child_name.endswith(("_CHOICE", "_SUPPGRP")):
            group: Group = parent.add_group(child_name)
            return group
    raise ConfigurationError(f"{parent.name} has no OBR choice group in this version")


def _set_repeated(segment: Any, name: str, values: list[str]) -> None:
    """Each value as its own repetition of field `name` (e.g. "FT1_26")."""
    for value in values:
        segment.add_field(name).value = value


def build_order_message(
    order: OutboundOrder, profile: LisProfile, control_id: str, now: datetime
) -> bytes:
    """The order as ER7 bytes (UTF-8, segments ended by CR) with MSH-10 `control_id`."""
    structure = _structure(profile)
    version_tuple = _version_tuple(profile.version)
    message = Message(
        structure, version=profile.version, validation_level=VALIDATION_LEVEL.TOLERANT
    )
    msh = message.msh
    msh.msh_3 = esc(profile.sending_application)
    msh.msh_4 = esc(profile.sending_facility)
    msh.msh_5 = esc(profile.receiving_application)
    msh.msh_6 = esc(profile.receiving_facility)
    msh.msh_7 = _ts(now)
    msh.msh_9 = f"{profile.message_type}^{structure}"
    msh.msh_10 = esc(control_id)
    msh.msh_11 = "P"
    msh.msh_12 = profile.version
    msh.msh_18 = CHARSET

    patient = message.add_group(f"{structure}_PATIENT")
    pid = patient.add_segment("PID")
    pid.pid_1 = "1"
    if order.patient_mrn:
        pid.pid_3 = _components(order.patient_mrn, "", "", order.placer_facility, "MR")
    pid.pid_5 = _components(order.patient_family_name, order.patient_given_name)
    if order.patient_birth_date:
        pid.pid_7 = _ts(order.patient_birth_date)
    if order.patient_sex:
        pid.pid_8 = esc(order.patient_sex)
    if order.payer_company_id or order.payer_company_name:
        insurance = patient.add_group(f"{structure}_INSURANCE")
        in1 = insurance.add_segment("IN1")
        in1.in1_1 = "1"
        in1.in1_2 = esc(order.payer_plan_id) or esc(order.payer_company_id)
        in1.in1_3 = esc(order.payer_company_id)
        if order.payer_company_name:
            in1.in1_4 = esc(order.payer_company_name)

    provider = _provider(order)
    placer = _components(order.placer_order_number, order.placer_facility)
    filler = _components(order.filler_order_number, profile.sending_facility)
    diagnoses = [_components(d.code, d.text, "I10") for d in order.diagnoses]
    for test in order.tests:
        group = message.add_group(f"{structure}_ORDER")
        orc = group.add_segment("ORC")
        orc.orc_1 = esc(order.order_control) or "NW"
        orc.orc_2 = placer
        orc.orc_3 = filler
        if order.ordered_at:
            orc.orc_9 = _ts(order.ordered_at)
        if provider:
            orc.orc_12 = provider
        if order.office_name and version_tuple >= (2, 5):
            orc.orc_21 = esc(order.office_name)

        if profile.message_type == "ORM^O01":
            detail = group.add_group(f"{structure}_ORDER_DETAIL")
            obr_parent = _choice_group(detail)
            dg1_parent: Group = detail
        else:
            obr_parent = group.add_group(f"{structure}_OBSERVATION_REQUEST")
            dg1_parent = obr_parent
        obr = obr_parent.add_segment("OBR")
        obr.obr_1 = str(test.seq)
        obr.obr_2 = placer
        obr.obr_3 = filler
        obr.obr_4 = service_identifier(test, profile)
        if order.ordered_at:
            obr.obr_6 = _ts(order.ordered_at)
        if provider:
            obr.obr_16 = provider
        if test.modifiers and version_tuple >= (2, 5):
            _set_repeated(obr, "OBR_46", [_components(m, "", "CPT4") for m in test.modifiers])
        for index, (diagnosis, value) in enumerate(zip(order.diagnoses, diagnoses, strict=True)):
            dg1 = dg1_parent.add_segment("DG1")
            dg1.dg1_1 = str(index + 1)
            dg1.dg1_2 = "I10"
            dg1.dg1_3 = value
            dg1.dg1_6 = "F"
            if diagnosis.text and version_tuple < (2, 5):
                dg1.dg1_4 = esc(diagnosis.text)

        if profile.billing_codes and test.cpt:
            ft1 = group.add_segment("FT1")
            ft1.ft1_1 = str(test.seq)
            ft1.ft1_4 = _ts(order.date_of_service) or _ts(now)
            ft1.ft1_6 = "CG"
            ft1.ft1_7 = _components(test.local_code, test.text, "L")
            ft1.ft1_10 = str(test.units)
            if diagnoses:
                _set_repeated(ft1, "FT1_19", diagnoses)
            if provider:
                ft1.ft1_21 = provider
            ft1.ft1_25 = _components(test.cpt, "", "C4")
            if test.modifiers:
                _set_repeated(ft1, "FT1_26", [_components(m, "", "CPT4") for m in test.modifiers])

    text: str = message.to_er7()
    return (text + "\r").encode("utf-8")
