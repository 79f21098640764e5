"""What the rules look at: one order's facts and the patient's recent history, as plain values.

`OrderFacts` is built either from a freshly read `labintake.domain.OrderRequest` (see
`facts_from_request`) or from the stored order rows (`labintake.verification.service`). The
engine does no I/O: the history of prior tests is passed in, and the engine indexes it once
per message for the history rules (`PriorIndex`, `Priors`).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date
from types import MappingProxyType
from typing import Any, TypeVar, cast

from labintake.domain import OrderRequest
from labintake.verification.beneficiary import patient_key

_NO_CODES: Mapping[str, str] = MappingProxyType({})
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class TestFacts:
    """One requested test (an OBR) as sent, plus any modifiers a coder recorded."""

    __test__ = False  # not a pytest class

    seq: int  # 1-based position among the order's tests
    location: str  # where OBR-4 sits, e.g. "OBR[2]-4"
    code: str
    system: str = ""
    text: str = ""
    alt_code: str = ""
    alt_system: str = ""
    units: int = 1
    modifiers: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class DiagnosisFacts:
    code: str
    location: str  # e.g. "DG1[2]-3"
    system: str = ""
    text: str = ""


@dataclass(frozen=True, slots=True)
class PayerFacts:
    company_id: str = ""  # IN1-3
    company_name: str = ""  # IN1-4
    plan_id: str = ""  # IN1-2


@dataclass(frozen=True, slots=True)
class OrderFacts:
    tests: tuple[TestFacts, ...]
    diagnoses: tuple[DiagnosisFacts, ...]
    date_of_service: date
    provider_npi: str = ""
    provider_name: str = ""
    provider_identifier: str = ""  # the id as sent, NPI or not
    provider_location: str = "ORC-12"
    payer: PayerFacts = PayerFacts()  # the primary insurance (first IN1)
    # every insurance in IN1 order (primary, secondary...); empty: only `payer` is known
    payers: tuple[PayerFacts, ...] = ()
    patient_key: str = ""  # "MBI|<id>" when the order carries one, else sending facility|MRN
    patient_birth_date: date | None = None
    patient_sex: str = ""
    interface: str = ""  # sender definition name ("" when the sender is not defined)
    interface_codes: Mapping[str, str] = field(default_factory=lambda: _NO_CODES)
    signature_on_file: bool | None = None  # None: the sender says nothing
    placer_order_number: str = ""
    # Findings a coder released over with a written reason, by key (code, location, subject):
    # raised again, they keep their override and do not hold the order.
    overridden: frozenset[tuple[str, str, str]] = frozenset()

    def all_payers(self) -> tuple[PayerFacts, ...]:
        """Primary first, then the others; just `payer` when the list was not given."""
        return self.payers or (self.payer,)


@dataclass(frozen=True, slots=True)
class PriorTest:
    """A test already ordered for the same patient (from stored orders)."""

    date_of_service: date
    cpt: str | None
    local_code: str | None
    diagnoses: tuple[str, ...] = ()  # normalised ICD-10-CM codes of that order
    order_ref: str = ""  # how a coder finds it: order id / placer order number
    same_message: bool = False  # another order group of the message being verified
    units: int = 1
    # False while the order is held for a coder or the office (it may still be rejected):
    # such tests do not count toward frequency limits.
    performed: bool = True


@dataclass(frozen=True, slots=True)
class PatientHistory:
    tests: tuple[PriorTest, ...] = ()


NO_HISTORY = PatientHistory()


@dataclass(slots=True)
class PriorIndex:
    """Prior tests as the history rules look them up: the performed ones by CPT, and the first
    of each code (local, CPT) per date of service.

    The engine builds one per patient history and one for the message's own groups, which it
    grows group by group: a message of many groups then costs each prior test once, where
    rebuilding the lookups for every group cost the groups times the tests (100 groups of
    100 tests: a million steps)."""

    by_cpt: dict[str, list[PriorTest]] = field(default_factory=dict)
    by_day: dict[date, dict[str, PriorTest]] = field(default_factory=dict)
    # every prior test with a CPT, by date of service, in the order given
    coded_on: dict[date, list[PriorTest]] = field(default_factory=dict)
    _derived: dict[Hashable, Any] = field(default_factory=dict)

    def add(self, priors: Iterable[PriorTest]) -> PriorIndex:
        self._derived.clear()
        for prior in priors:
            if prior.cpt and prior.performed:
                self.by_cpt.setdefault(prior.cpt, []).append(prior)
            if prior.cpt:
                self.coded_on.setdefault(prior.date_of_service, []).append(prior)
            if prior.local_code or prior.cpt:
                day = self.by_day.setdefault(prior.date_of_service, {})
                if prior.local_code:
                    day.setdefault(f"L:{prior.local_code}", prior)
                if prior.cpt:
                    day.setdefault(f"C:{prior.cpt}", prior)
        return self

    def derived(self, key: Hashable, build: Callable[[], T]) -> T:
        """What a rule works out from these priors alone (`build()`), once per index and key
        until priors are added: the groups of a message that share a history share it."""
        if key not in self._derived:
            self._derived[key] = build()
        return cast(T, self._derived[key])


@dataclass(frozen=True, slots=True)
class Priors:
    """What the history rules see: the patient's other messages (`history`), then the groups
    of this message verified before the current one (`message`)."""

    history: PriorIndex
    message: PriorIndex

    def performed(self, cpt: str) -> list[PriorTest]:
        """Performed prior tests with this CPT (frequency limits count these)."""
        return self.history.by_cpt.get(cpt, []) + self.message.by_cpt.get(cpt, [])

    def same_day(self, dos: date, local_code: str, cpt: str | None) -> PriorTest | None:
        """The first prior test of the same catalog test (else the same CPT) on `dos`."""
        days = (self.history.by_day.get(dos), self.message.by_day.get(dos))
        for key in (f"L:{local_code}", f"C:{cpt}"):
            for day in days:
                if day is not None and (found := day.get(key)) is not None:
                    return found
        return None


def facts_from_request(
    request: OrderRequest,
    *,
    date_of_service: date,
    sending_facility: str = "",
    interface: str = "",
    interface_codes: Mapping[str, str] | None = None,
) -> OrderFacts:
    """The facts of a freshly read order group. `date_of_service` is the caller's choice when
    the message gave none (e.g. the day it was received)."""
    payers = tuple(
        PayerFacts(company_id=i.company_id, company_name=i.company_name, plan_id=i.plan_id)
        for i in request.insurances
    )
    provider = request.provider
    name = " ".join(p for p in (provider.given_name, provider.family_name) if p)
    return OrderFacts(
        tests=tuple(
            TestFacts(
                seq=i,
                location=t.location,
                code=t.service.code,
                system=t.service.system,
                text=t.service.text,
                alt_code=t.service.alt_code,
                alt_system=t.service.alt_system,
                units=t.units,
            )
            for i, t in enumerate(request.tests, start=1)
        ),
        diagnoses=tuple(
            DiagnosisFacts(code=d.code, location=d.location, system=d.system, text=d.text)
            for d in request.diagnoses
        ),
        date_of_service=request.date_of_service or date_of_service,
        provider_npi=provider.npi,
        provider_name=name,
        provider_identifier=provider.identifier,
        provider_location=provider.location or "ORC-12",
        payer=payers[0] if payers else PayerFacts(),
        payers=payers,
        patient_key=patient_key(
            request.patient.identifiers,
            sending_facility,
            request.patient.mrn,
            [i.member_id for i in request.insurances if i.member_id],
        ),
        patient_birth_date=request.patient.birth_date,
        patient_sex=request.patient.sex,
        interface=interface,
        interface_codes=MappingProxyType(dict(interface_codes or {})),
        signature_on_file=request.signature_on_file,
        placer_order_number=request.placer_order_number,
    )
