"""`/api/orders...` answers: the order list, one order in full, a note."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from labintake.web.schemas import ApiModel


class PatientBrief(ApiModel):
    mrn: str
    family_name: str
    given_name: str


class OrderSummary(ApiModel):
    id: int
    status: str
    row_version: int = Field(description="send it back with an action (optimistic locking)")
    placer_order_number: str
    sending_facility: str
    patient: PatientBrief
    date_of_service: str | None = Field(description="ISO date")
    created_at: str = Field(description="ISO date-time, UTC")
    due_at: str = Field(description="when the next action on the order is due")
    assigned_to: str | None


class OrderList(ApiModel):
    orders: list[OrderSummary]
    next_cursor: str | None = Field(description="pass as `cursor` for the next page")


class MessageInfo(ApiModel):
    id: int
    control_id: str
    sending_application: str
    sending_facility: str
    message_type: str
    version: str
    received_at: str


class Patient(PatientBrief):
    birth_date: str | None
    sex: str


class Payer(ApiModel):
    company_id: str
    company_name: str
    plan_id: str


class Office(ApiModel):
    name: str
    phone: str
    fax: str
    address: str


class OrderingProvider(ApiModel):
    npi: str
    family_name: str
    given_name: str
    office: Office


class TestAsSent(ApiModel):
    code: str
    text: str
    system: str
    alt_code: str
    alt_system: str


class TestResolved(ApiModel):
    local_code: str | None
    loinc: str | None
    cpt: str | None


class OrderTest(ApiModel):
    seq: int
    location: str
    sent: TestAsSent
    resolved: TestResolved
    necessity: str | None
    units: int
    modifiers: list[str]


class Diagnosis(ApiModel):
    seq: int
    code: str
    text: str
    system: str
    location: str
    source: str
    active: bool


class Finding(ApiModel):
    id: int
    code: str
    severity: str = Field(description="hold | warn | info")
    location: str
    message: str
    clarify: str | None
    test_seq: int | None
    state: str
    override_reason: str | None


class Contact(ApiModel):
    id: int
    at: str
    actor: str
    channel: str
    outcome: str
    person: str
    answer: str
    follow_up_on: str | None
    query_id: int | None


class OfficeQuery(ApiModel):
    id: int
    status: str
    created_at: str
    actor: str
    respond_by: str | None
    closed_at: str | None
    closed_reason: str | None
    finding_codes: list[str]


class HistoryEntry(ApiModel):
    at: str
    actor: str
    action: str
    detail: dict[str, Any]


class Note(ApiModel):
    id: int
    at: str
    author: str
    text: str


class OrderDetail(ApiModel):
    """An order with a page of its tests and its first diagnoses."""

    id: int
    status: str
    row_version: int
    message: MessageInfo | None
    control_id: str | None
    sending_application: str
    sending_facility: str
    order_control: str
    placer_order_number: str
    filler_order_number: str
    patient: Patient
    payer: Payer
    ordering_provider: OrderingProvider
    date_of_service: str | None
    assigned_to: str | None
    due_at: str
    tests: list[OrderTest]
    tests_total: int
    tests_offset: int
    tests_next_offset: int | None
    diagnoses: list[Diagnosis]
    diagnoses_total: int
    findings: list[Finding]
    code_table_versions: dict[str, str]
    rules_version: str | None
    contacts: list[Contact]
    queries: list[OfficeQuery]
    history: list[HistoryEntry]


class OrderDetailWithNotes(OrderDetail):
    """`GET /api/orders/{id}`: the order and its internal notes."""

    notes: list[Note]
