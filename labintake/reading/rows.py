"""From read orders to the rows the order tables hold (plain dicts, ready for bulk inserts).

What has a column goes in its column; everything else read from the message goes into
`Order.details` (all patient ids and insurances, provider id, call-back phone, notes, test
notes and answers, warnings, extras) so nothing read is lost. Text longer than its column is
cut to fit (PostgreSQL would refuse it) and the cut is recorded in the details.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from functools import cache
from typing import Any
from zoneinfo import ZoneInfo

from labintake.codes.catalog import CPT_SYSTEMS, LOINC_SYSTEMS
from labintake.domain import OrderRequest, TestRequest
from labintake.hl7.reader import MessageHeader
from labintake.interfaces import Interface
from labintake.search_keys import fold, priority_rank
from labintake.verification.beneficiary import patient_key


@dataclass(frozen=True, slots=True)
class ColumnLimits:
    """The length limits of the order tables' text columns, as `model_column_limits` reads
    them from the models. The reading sandbox is handed them by its parent: importing the
    models (SQLAlchemy, SQLModel) would cost each sandbox about 40 MB and half a second."""

    order: Mapping[str, int]
    test: Mapping[str, int]
    diagnosis: Mapping[str, int]


@cache
def model_column_limits() -> ColumnLimits:
    """The limits of the `order`, `order_test` and `order_diagnosis` tables' text columns."""
    from labintake.models import Order, OrderDiagnosis, OrderTest
    from labintake.models.limits import column_limits

    return ColumnLimits(
        column_limits(Order), column_limits(OrderTest), column_limits(OrderDiagnosis)
    )


# The keys of the rows `order_rows` makes, in the order it makes them: a row with exactly
# these keys crosses a process boundary as a tuple of its values (see `OrderRows.__reduce__`).
ORDER_KEYS = (
    *("message_id", "group_index", "status", "sending_application", "sending_facility"),
    *("order_control", "placer_order_number", "filler_order_number", "patient_mrn"),
    *("patient_family_name", "patient_given_name", "patient_birth_date", "patient_sex"),
    *("payer_company_id", "payer_company_name", "payer_plan_id", "provider_npi"),
    *("provider_family_name", "provider_given_name", "office_name", "office_phone"),
    *("office_fax", "office_address", "date_of_service", "ordered_at", "priority", "details"),
    *("family_fold", "given_fold", "priority_rank", "beneficiary_key"),
)
DETAILS_KEYS = (
    *("patient_identifiers", "insurances", "provider", "office_callback_phone", "notes"),
    *("tests", "date_of_service_source", "signature_on_file", "interface", "message_type"),
    *("version", "extras", "warnings"),
)
TEST_KEYS = (
    *("seq", "location", "sent_code", "sent_text", "sent_system", "sent_alt_code"),
    *("sent_alt_system", "units", "local_code", "loinc", "cpt", "modifiers"),
)
DIAGNOSIS_KEYS = ("seq", "code", "text", "system", "location", "source", "active")
_DETAILS_AT = ORDER_KEYS.index("details")
_DATES_AT = (ORDER_KEYS.index("patient_birth_date"), ORDER_KEYS.index("date_of_service"))
_ORDERED_AT = ORDER_KEYS.index("ordered_at")


def _pack(row: dict[str, Any], keys: tuple[str, ...]) -> tuple[Any, ...] | dict[str, Any]:
    """The row's values alone when its keys are `keys` (in that order), else the row."""
    return tuple(row.values()) if tuple(row) == keys else row


def _unpack(packed: tuple[Any, ...] | dict[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
    return dict(zip(keys, packed, strict=True)) if type(packed) is tuple else dict(packed)


def _pack_order(row: dict[str, Any]) -> tuple[Any, ...] | dict[str, Any]:
    """The order row as a tuple of values (dates as ordinals, the UTC time as ISO text: a
    pickled date or datetime costs a lookup of its class), or the row as it is when it is
    not as `order_rows` makes it."""
    if tuple(row) != ORDER_KEYS or not isinstance(row["details"], dict):
        return row
    values = list(row.values())
    for at in _DATES_AT:
        if values[at] is not None:
            if type(values[at]) is not date:
                return row
            values[at] = values[at].toordinal()
    moment = values[_ORDERED_AT]
    if moment is not None:
        if type(moment) is not datetime or moment.tzinfo is not UTC:
            return row
        values[_ORDERED_AT] = moment.isoformat()
    values[_DETAILS_AT] = _pack(values[_DETAILS_AT], DETAILS_KEYS)
    return tuple(values)


def _unpack_order(packed: tuple[Any, ...] | dict[str, Any]) -> dict[str, Any]:
    if type(packed) is not tuple:
        return dict(packed)
    values = list(packed)
    for at in _DATES_AT:
        if values[at] is not None:
            values[at] = date.fromordinal(values[at])
    if values[_ORDERED_AT] is not None:
        values[_ORDERED_AT] = datetime.fromisoformat(values[_ORDERED_AT])
    values[_DETAILS_AT] = _unpack(values[_DETAILS_AT], DETAILS_KEYS)
    return dict(zip(ORDER_KEYS, values, strict=True))


def _unpack_rows(
    order: tuple[Any, ...] | dict[str, Any],
    tests: list[tuple[Any, ...] | dict[str, Any]],
    diagnoses: list[tuple[Any, ...] | dict[str, Any]],
) -> OrderRows:
    return OrderRows(
        _unpack_order(order),
        [_unpack(t, TEST_KEYS) for t in tests],
        [_unpack(d, DIAGNOSIS_KEYS) for d in diagnoses],
    )


@dataclass(slots=True)
class OrderRows:
    """One order's rows: the order itself, its tests and diagnoses (ids filled in on insert)."""

    order: dict[str, Any]
    tests: list[dict[str, Any]] = field(default_factory=list)
    diagnoses: list[dict[str, Any]] = field(default_factory=list)

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickled as tuples of values: the reading sandbox sends every plan back over a pipe,
        and the column names repeated in every row were most of the bytes and of the time
        spent pickling and unpickling them. Unpickled, the rows are dicts as they were."""
        return (
            _unpack_rows,
            (
                _pack_order(self.order),
                [_pack(t, TEST_KEYS) for t in self.tests],
                [_pack(d, DIAGNOSIS_KEYS) for d in self.diagnoses],
            ),
        )


def _fit(row: dict[str, Any], limits: Mapping[str, int], cut: list[str], where: str) -> None:
    for name, limit in limits.items():
        value = row.get(name)
        if isinstance(value, str) and len(value) > limit:
            row[name] = value[:limit]
            cut.append(f"{where}.{name} cut to {limit} characters")


def to_utc(moment: datetime | None, zone: str) -> datetime | None:
    """A datetime from the message in UTC; naive times are the sender's local time."""
    if moment is None:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=ZoneInfo(zone))
    return moment.astimezone(UTC)


def resolve_codes(
    test: TestRequest, interface: Interface | None
) -> tuple[str | None, str | None, str | None]:
    """(local_code, loinc, cpt) for one test as far as the sender's message and interface say.

    LOINC and CPT are taken only from a triplet whose coding system names them; when the
    message names no coding system at all, the interface's `test_code_system` speaks for it.
    The local (catalog) code comes from the interface's `test_codes` map.
    """
    service = test.service
    loinc = cpt = None
    triplets = [(service.code, service.system), (service.alt_code, service.alt_system)]
    if not service.system and not service.alt_system and interface is not None:
        declared = interface.test_code_system
        triplets = [(service.code, declared if declared != "local" else "")]
    for code, system in triplets:
        if not code:
            continue
        if system.upper() in LOINC_SYSTEMS:
            loinc = loinc or code
        elif system.upper() in CPT_SYSTEMS:
            cpt = cpt or code
    local = None
    if interface is not None:
        for code in (service.code, service.alt_code):
            if code and code in interface.test_codes:
                local = interface.test_codes[code]
                break
    return local, loinc, cpt


def order_rows(
    message_id: int,
    header: MessageHeader,
    order: OrderRequest,
    interface: Interface | None,
    decoding_note: str = "",
    columns: ColumnLimits | None = None,
) -> OrderRows:
    """The rows of one read order, each text cut to its column (`columns`: the models' limits
    unless given)."""
    columns = columns or model_column_limits()
    zone = interface.timezone if interface is not None else "UTC"
    payer = order.insurances[0] if order.insurances else None
    patient, provider, office = order.patient, order.provider, order.office
    warnings = [*([decoding_note] if decoding_note else []), *order.warnings]
    details: dict[str, Any] = {
        "patient_identifiers": list(patient.identifiers),
        "insurances": [
            {
                "plan_id": i.plan_id,
                "company_id": i.company_id,
                "company_name": i.company_name,
                "location": i.location,
                "member_id": i.member_id,
            }
            for i in order.insurances
        ],
        "provider": {
            "identifier": provider.identifier,
            "id_authority": provider.id_authority,
            "location": provider.location,
        },
        "office_callback_phone": office.callback_phone,
        "notes": list(order.notes),
        "tests": [
            {
                "location": t.location,
                "specimen": t.specimen,
                "notes": list(t.notes),
                "answers": [list(a) for a in t.answers],
                "sent_alt_text": t.service.alt_text,
            }
            for t in order.tests
        ],
        "date_of_service_source": order.date_of_service_source,
        "signature_on_file": order.signature_on_file,
        "interface": interface.name if interface is not None else None,
        "message_type": header.message_type,
        "version": header.version,
        "extras": {key: value for key, value in order.extras},
        "warnings": warnings,
    }
    row: dict[str, Any] = {
        "message_id": message_id,
        "group_index": order.group_index,
        "status": "received",
        "sending_application": header.sending_application,
        "sending_facility": header.sending_facility,
        "order_control": order.order_control,
        "placer_order_number": order.placer_order_number,
        "filler_order_number": order.filler_order_number,
        "patient_mrn": patient.mrn,
        "patient_family_name": patient.family_name,
        "patient_given_name": patient.given_name,
        "patient_birth_date": patient.birth_date,
        "patient_sex": patient.sex,
        "payer_company_id": payer.company_id if payer else "",
        "payer_company_name": payer.company_name if payer else "",
        "payer_plan_id": payer.plan_id if payer else "",
        "provider_npi": provider.npi,
        "provider_family_name": provider.family_name,
        "provider_given_name": provider.given_name,
        "office_name": office.name,
        "office_phone": office.phone or office.callback_phone,
        "office_fax": office.fax,
        "office_address": office.address,
        "date_of_service": order.date_of_service,
        "ordered_at": to_utc(order.ordered_at, zone),
        "priority": order.priority,
        "details": details,
    }
    cut: list[str] = []
    _fit(row, columns.order, cut, "order")
    row["family_fold"] = fold(row["patient_family_name"])[: columns.order["family_fold"]]
    row["given_fold"] = fold(row["patient_given_name"])[: columns.order["given_fold"]]
    row["priority_rank"] = priority_rank(row["priority"])
    row["beneficiary_key"] = patient_key(
        patient.identifiers,
        row["sending_facility"],
        row["patient_mrn"],
        [i.member_id for i in order.insurances if i.member_id],
    )
    rows = OrderRows(order=row)
    for seq, test in enumerate(order.tests, start=1):
        local, loinc, cpt = resolve_codes(test, interface)
        test_row: dict[str, Any] = {
            "seq": seq,
            "location": test.location,
            "sent_code": test.service.code,
            "sent_text": test.service.text,
            "sent_system": test.service.system,
            "sent_alt_code": test.service.alt_code,
            "sent_alt_system": test.service.alt_system,
            "units": test.units,
            "local_code": local,
            "loinc": loinc,
            "cpt": cpt,
            "modifiers": "",
        }
        _fit(test_row, columns.test, cut, f"test {seq}")
        rows.tests.append(test_row)
    for seq, diagnosis in enumerate(order.diagnoses, start=1):
        dx_row: dict[str, Any] = {
            "seq": seq,
            "code": diagnosis.code,
            "text": diagnosis.text,
            "system": diagnosis.system,
            "location": diagnosis.location,
            "source": "sender",
            "active": True,
        }
        _fit(dx_row, columns.diagnosis, cut, f"diagnosis {seq}")
        rows.diagnoses.append(dx_row)
    if cut:
        details["warnings"].extend(cut)
    return rows
