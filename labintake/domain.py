"""Pure domain values: an order as read from an HL7 message, before any storage.

The HL7 reader produces these; the verification engine consumes them. No SQL, no sockets.
Every value keeps the HL7 location it came from, so findings can point at it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime


@dataclass(frozen=True, slots=True)
class CodedValue:
    """An HL7 CE/CWE value: code, text and coding system as the sender wrote them."""

    code: str
    text: str = ""
    system: str = ""
    alt_code: str = ""
    alt_text: str = ""
    alt_system: str = ""


@dataclass(frozen=True, slots=True)
class Patient:
    identifiers: tuple[str, ...] = ()  # PID-3 ids as "id^^^authority^type"
    mrn: str = ""
    family_name: str = ""
    given_name: str = ""
    birth_date: date | None = None
    sex: str = ""


@dataclass(frozen=True, slots=True)
class Insurance:
    plan_id: str = ""  # IN1-2
    company_id: str = ""  # IN1-3
    company_name: str = ""  # IN1-4
    location: str = ""
    member_id: str = ""  # IN1-36 policy number, else IN1-49 insured's id (may hold an MBI)


@dataclass(frozen=True, slots=True)
class Provider:
    npi: str = ""
    family_name: str = ""
    given_name: str = ""
    id_authority: str = ""
    location: str = ""
    identifier: str = ""  # the id as sent (XCN-1), NPI or not


@dataclass(frozen=True, slots=True)
class Office:
    """Who the coder calls: ORC-21..24 (and ORC-14 call-back phone)."""

    name: str = ""
    address: str = ""
    phone: str = ""
    fax: str = ""
    callback_phone: str = ""  # ORC-14


@dataclass(frozen=True, slots=True)
class Diagnosis:
    code: str
    text: str = ""
    system: str = ""  # I10, I10C, ICD-10-CM...
    location: str = ""  # e.g. "DG1[2]-3"


@dataclass(frozen=True, slots=True)
class TestRequest:
    """One requested test: an OBR and what belongs to it."""

    service: CodedValue  # OBR-4 as sent
    location: str  # e.g. "OBR[1]-4"
    units: int = 1
    specimen: str = ""
    notes: tuple[str, ...] = ()
    answers: tuple[tuple[str, str], ...] = ()  # OBX ask-at-order-entry (question, answer)


@dataclass(frozen=True, slots=True)
class OrderRequest:
    """One order group (ORC + its OBRs) of a received message."""

    group_index: int  # 1-based position of the order group in the message
    order_control: str  # ORC-1: NW, CA, XO...
    placer_order_number: str
    filler_order_number: str
    patient: Patient
    insurances: tuple[Insurance, ...]
    provider: Provider
    office: Office
    tests: tuple[TestRequest, ...]
    diagnoses: tuple[Diagnosis, ...]
    date_of_service: date | None
    ordered_at: datetime | None = None
    priority: str = ""
    notes: tuple[str, ...] = ()
    signature_on_file: bool | None = None  # None when the sender says nothing
    warnings: tuple[str, ...] = field(default_factory=tuple)  # lenient-reading remarks
    date_of_service_source: str = ""  # where the date came from, e.g. "OBR[1]-7"
    extras: tuple[tuple[str, str], ...] = ()  # other values read, keyed by HL7 location
