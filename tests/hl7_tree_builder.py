"""The outbound order built as an hl7apy element tree: the reference for the ER7 writer.

:func:`labintake.hl7.order_builder.build_order_message` writes each order straight to ER7
from a plan hl7apy's reference data gives it; this module builds the same message field by
field with hl7apy's element tree (tens of milliseconds per order), using the same values and
the same plan. The tests hold the two to byte-for-byte equality over generated orders, and
parse what they produce back with hl7apy; it is also the way to see an outbound order as an
hl7apy :class:`~hl7apy.core.Message`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from hl7apy.consts import VALIDATION_LEVEL
from hl7apy.core import Group, Message

from labintake.errors import ConfigurationError
from labintake.hl7.order_builder import (
    CHARSET,
    LisProfile,
    OutboundOrder,
    components,
    diagnosis_value,
    esc,
    message_plan,
    modifier_value,
    provider,
    service_identifier,
    ts,
)


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


def build_order_tree(
    order: OutboundOrder, profile: LisProfile, control_id: str, now: datetime
) -> Message:
    """The order as an hl7apy message (tolerant validation), MSH-10 `control_id`."""
    plan = message_plan(profile)
    writes = plan.writes
    structure = plan.layout.structure
    table = plan.escapes
    message = Message(
        structure, version=profile.version, validation_level=VALIDATION_LEVEL.TOLERANT
    )
    msh = message.msh
    msh.msh_3 = esc(profile.sending_application, table)
    msh.msh_4 = esc(profile.sending_facility, table)
    msh.msh_5 = esc(profile.receiving_application, table)
    msh.msh_6 = esc(profile.receiving_facility, table)
    msh.msh_7 = ts(now)
    msh.msh_9 = f"{profile.message_type}^{structure}"
    msh.msh_10 = esc(control_id, table)
    msh.msh_11 = "P"
    msh.msh_12 = profile.version
    if writes("MSH_18"):
        msh.msh_18 = CHARSET

    patient = message.add_group(f"{structure}_PATIENT")
    pid = patient.add_segment("PID")
    pid.pid_1 = "1"
    if order.patient_mrn:
        pid.pid_3 = components(order.patient_mrn, "", "", order.placer_facility, "MR", table=table)
    pid.pid_5 = components(order.patient_family_name, order.patient_given_name, table=table)
    if order.patient_birth_date and writes("PID_7"):
        pid.pid_7 = ts(order.patient_birth_date)
    if order.patient_sex and writes("PID_8"):
        pid.pid_8 = esc(order.patient_sex, table)
    if order.payer_company_id or order.payer_company_name:
        insurance = patient.add_group(f"{structure}_INSURANCE")
        in1 = insurance.add_segment("IN1")
        in1.in1_1 = "1"
        in1.in1_2 = esc(order.payer_plan_id, table) or esc(order.payer_company_id, table)
        in1.in1_3 = esc(order.payer_company_id, table)
        if order.payer_company_name:
            in1.in1_4 = esc(order.payer_company_name, table)

    who = provider(order, table)
    placer = components(order.placer_order_number, order.placer_facility, table=table)
    filler = components(order.filler_order_number, profile.sending_facility, table=table)
    diagnoses = [diagnosis_value(d, table) for d in order.diagnoses]
    for test in order.tests:
        group = message.add_group(f"{structure}_ORDER")
        orc = group.add_segment("ORC")
        orc.orc_1 = esc(order.order_control, table) or "NW"
        orc.orc_2 = placer
        orc.orc_3 = filler
        if order.ordered_at and writes("ORC_9"):
            orc.orc_9 = ts(order.ordered_at)
        if who:
            orc.orc_12 = who
        if order.office_name and writes("ORC_21"):
            orc.orc_21 = esc(order.office_name, table)

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
        if order.ordered_at and writes("OBR_6"):
            obr.obr_6 = ts(order.ordered_at)
        if who:
            obr.obr_16 = who
        if test.modifiers and writes("OBR_46"):
            _set_repeated(obr, "OBR_46", [modifier_value(m, table) for m in test.modifiers])
        for index, (diagnosis, value) in enumerate(zip(order.diagnoses, diagnoses, strict=True)):
            dg1 = dg1_parent.add_segment("DG1")
            dg1.dg1_1 = str(index + 1)
            if writes("DG1_2"):
                dg1.dg1_2 = "I10"
            dg1.dg1_3 = value
            dg1.dg1_6 = "F"
            if diagnosis.text and writes("DG1_4"):
                dg1.dg1_4 = esc(diagnosis.text, table)

        if test.cpt and writes("FT1_25"):
            ft1 = group.add_segment("FT1")
            ft1.ft1_1 = str(test.seq)
            ft1.ft1_4 = ts(order.date_of_service) or ts(now)
            ft1.ft1_6 = "CG"
            ft1.ft1_7 = components(test.local_code, test.text, "L", table=table)
            ft1.ft1_10 = str(test.units)
            if diagnoses:
                _set_repeated(ft1, "FT1_19", diagnoses)
            if who:
                ft1.ft1_21 = who
            ft1.ft1_25 = components(test.cpt, "", "C4", table=table)
            if test.modifiers:
                _set_repeated(ft1, "FT1_26", [modifier_value(m, table) for m in test.modifiers])
    return message


def build_order_message_with_tree(
    order: OutboundOrder, profile: LisProfile, control_id: str, now: datetime
) -> bytes:
    """:func:`build_order_tree` as ER7 bytes (UTF-8, segments ended by CR)."""
    text: str = build_order_tree(order, profile, control_id, now).to_er7()
    return (text + "\r").encode("utf-8")
