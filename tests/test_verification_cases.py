"""The expected-findings corpus: realistic orders, each with its exact findings.

Cases live in `tests/verification_cases/*.toml` (see its README) and run against the code
tables shipped in `code_tables/` and the sender definitions in `interfaces/`. Within a case,
the orders are the order groups of one message, verified together as one requisition
(`verify_message`), as the service does with the stored orders of a message.
"""

from __future__ import annotations

import re
import tomllib
from collections import Counter
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from labintake.codes.icd10 import normalize_icd10
from labintake.codes.tables import CodeTables, load_code_tables
from labintake.interfaces import InterfaceRegistry, load_interfaces
from labintake.statuses import Severity
from labintake.verification import (
    DiagnosisFacts,
    OrderFacts,
    PatientHistory,
    PayerFacts,
    PriorTest,
    TestFacts,
    verify_message,
)

REPO = Path(__file__).resolve().parent.parent
CASES_DIR = Path(__file__).parent / "verification_cases"
_MEDICARE = PayerFacts("CMS", "Medicare Part B", "MCRB")
_BCBS = PayerFacts("BCBS01", "Blue Cross Blue Shield of Illinois", "PPO")
# Each payer key is the order's insurances in IN1 order (primary first).
PAYERS: dict[str, tuple[PayerFacts, ...]] = {
    "medicare": (_MEDICARE,),
    "medicare-advantage": (PayerFacts("MAPLAN", "Humana Medicare Advantage", "HMOMA"),),
    "commercial": (_BCBS,),
    "commercial-2": (PayerFacts("UHC", "UnitedHealthcare Choice Plus", "CHOICE"),),
    "medicaid": (PayerFacts("IAMCD", "Iowa Medicaid", "MCD"),),
    "self-pay": (PayerFacts("", "", ""),),
    # an employer plan first, Medicare second (Medicare secondary payer)
    "commercial-then-medicare": (_BCBS, _MEDICARE),
    # Medicare first, a supplement second
    "medicare-then-medigap": (_MEDICARE, PayerFacts("MEDIGAP", "Medicare Supplement Plan G", "G")),
    # a plan whose name says Medicare but that the payer table does not know as Medicare
    "medicare-in-name-only": (PayerFacts("ZZ9", "Medicare Supplement Plan F by Acme", "F"),),
}
SYSTEMS = {"local": "", "LN": "LN", "CPT": "CPT"}
TEST_SPEC = re.compile(
    r"^(?P<code>[^\^*+~]+)(?:\^(?P<sys>[^*+~]*))?(?:~(?P<alt>[^\^*+]+)\^(?P<altsys>[^*+]*))?"
    r"(?:\*(?P<units>\d+))?(?P<mods>(?:\+[0-9A-Z]{2})*)$"
)
# The finding codes of the outside contract (CONTRACT.md), all raised by the rules.
CONTRACT_CODES = {
    "DX_MISSING", "DX_INVALID", "DX_NOT_BILLABLE", "DX_NOT_EFFECTIVE", "DX_EXCLUDES1",
    "NECESSITY_NOT_SUPPORTED", "NECESSITY_FREQUENCY", "SCREENING_ON_DIAGNOSTIC", "TEST_UNKNOWN",
    "TEST_CODE_MISMATCH", "BUNDLED_COMPONENT", "UNITS_OVER_LIMIT", "PROVIDER_MISSING",
    "PROVIDER_NPI_INVALID", "DUPLICATE_ORDER", "SIGNATURE_MISSING",
}  # fmt: skip
# Diagnosis edits and the Medicare parts warning, added after the contract's first list.
EDIT_CODES = {
    "DX_SEX_CONFLICT", "DX_AGE_CONFLICT", "DX_EXTERNAL_CAUSE_ONLY", "DX_MANIFESTATION_ALONE",
    "DX_UNSPECIFIED_WITH_SPECIFIC", "TEST_MEDICARE_PARTS",
}  # fmt: skip
ICD10_SHAPE = re.compile(r"\b[A-TV-Z][0-9][0-9A-Z](?:\.[0-9A-Z]{1,4})?\b")
PAYMENT_WORDS = re.compile(r"pay|reimburs|denied|denial|covered|coverage|\$", re.IGNORECASE)
LIABILITY_WORDS = re.compile(r"\bABN\b|Beneficiary Notice|modifier|\bG[AZXY]\b", re.IGNORECASE)


@dataclass(frozen=True)
class Case:
    id: str
    data: dict[str, Any]
    defaults: dict[str, Any]

    def get(self, key: str, default: Any = None) -> Any:
        return self.data.get(key, self.defaults.get(key, default))


def _load_cases() -> list[Case]:
    cases: list[Case] = []
    for path in sorted(CASES_DIR.glob("*.toml")):
        data = tomllib.loads(path.read_text(encoding="utf-8"))
        defaults = data.get("defaults", {})
        for case in data.get("case", []):
            cases.append(Case(f"{path.stem}:{case['id']}", case, defaults))
    return cases


CASES = _load_cases()


@pytest.fixture(scope="module")
def tables() -> CodeTables:
    return load_code_tables(REPO / "code_tables")


@pytest.fixture(scope="module")
def registry() -> InterfaceRegistry:
    return load_interfaces(REPO / "interfaces")


def _tests(specs: list[str], first_obr: int, system: str) -> tuple[TestFacts, ...]:
    tests = []
    for i, spec in enumerate(specs):
        match = TEST_SPEC.match(spec)
        assert match, f"bad test spec {spec!r}"
        mods = tuple(m for m in (match["mods"] or "").split("+") if m)
        tests.append(
            TestFacts(
                seq=i + 1,
                location=f"OBR[{first_obr + i}]-4",
                code=match["code"],
                system=match["sys"] if match["sys"] is not None else system,
                text=match["code"],
                alt_code=match["alt"] or "",
                alt_system=match["altsys"] or "",
                units=int(match["units"] or 1),
                modifiers=mods,
            )
        )
    return tuple(tests)


def _diagnoses(codes: list[str], first_dg1: int) -> tuple[DiagnosisFacts, ...]:
    found = []
    for i, spec in enumerate(codes):
        code, _, system = spec.partition("^")
        found.append(
            DiagnosisFacts(code=code, location=f"DG1[{first_dg1 + i}]-3", system=system or "I10")
        )
    return tuple(found)


def _history(rows: list[str]) -> list[PriorTest]:
    """`"2026-01-10 84443 E03.9"`; optional `units=2`, and `held` for an order that has not
    gone to the lab (it does not count toward frequency limits)."""
    history = []
    for row in rows:
        day, cpt, *rest = row.split()
        dx = tuple(t for t in rest if "=" not in t and t != "held")
        units = next((int(t[6:]) for t in rest if t.startswith("units=")), 1)
        history.append(
            PriorTest(
                date.fromisoformat(day),
                cpt,
                None,
                dx,
                "earlier",
                units=units,
                performed="held" not in rest,
            )
        )
    return history


def _orders(case: Case) -> list[dict[str, Any]]:
    if "orders" in case.data:
        return list(case.data["orders"])
    return [case.data]


def _expected(order: dict[str, Any]) -> Counter[tuple[str, str, str]]:
    found: Counter[tuple[str, str, str]] = Counter()
    for line in order.get("findings", []):
        code, severity, location = line.split()
        found[(code, severity, location)] += 1
    return found


def test_corpus_is_large_and_covers_every_finding_code() -> None:
    orders = [o for c in CASES for o in _orders(c)]
    assert len(orders) >= 80
    codes = {line.split()[0] for o in orders for line in o.get("findings", [])}
    assert codes >= CONTRACT_CODES | EDIT_CODES
    assert any(len(_orders(c)) > 1 for c in CASES)
    assert len({c.get("sender") for c in CASES}) >= 3
    assert {c.get("payer") for c in CASES} >= {"medicare", "commercial"}


# The first three files predate per-case sources; every case of any other file names the
# rule's source (NCD section, CMS manual chapter, ICD-10-CM guideline) in `source`.
UNSOURCED_FILES = {"lakeview-cerner", "northside-epic", "prairie-clinic"}


def test_every_new_case_cites_the_source_of_its_rule() -> None:
    unsourced = [
        c.id
        for c in CASES
        if c.id.split(":")[0] not in UNSOURCED_FILES and not str(c.get("source", "")).strip()
    ]
    assert not unsourced, f"cases without a source: {unsourced}"


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_case_produces_exactly_its_expected_findings(
    case: Case, tables: CodeTables, registry: InterfaceRegistry
) -> None:
    sender = case.get("sender")
    interface = next(i for i in registry if i.name == sender)
    system = SYSTEMS[interface.test_code_system]
    payers = PAYERS[case.get("payer", "medicare")]
    dos = case.get("dos")
    history = _history(case.get("history", []))
    shared_dx = case.get("shared_dx", False)
    obr = dg1 = 1
    releases = tables.icd10_releases()
    orders = _orders(case)
    facts_list: list[OrderFacts] = []
    for index, order in enumerate(orders, start=1):
        tests = _tests(order["tests"], obr, system)
        dx_codes = order.get("dx", case.get("dx", []))
        diagnoses = _diagnoses(dx_codes, 1 if shared_dx else dg1)
        npi = order.get("npi", case.get("npi", "1234567893"))
        provider = order.get("provider", case.get("provider", "Chidi Okafor"))
        facts_list.append(
            OrderFacts(
                tests=tests,
                diagnoses=diagnoses,
                date_of_service=order.get("dos", dos),
                provider_npi=npi,
                provider_name=provider,
                provider_location=f"ORC[{index}]-12" if (npi or provider) else "ORC-12",
                payer=payers[0],
                payers=payers,
                patient_key=f"{interface.sending_facility}|{case.id}",
                patient_birth_date=case.get("birth_date") or None,
                patient_sex=case.get("sex", ""),
                interface=interface.name,
                interface_codes=interface.test_codes,
                signature_on_file=order.get("signature", case.get("signature")),
            )
        )
        obr += len(tests)
        dg1 += 0 if shared_dx else len(dx_codes)
    results = verify_message(facts_list, tables, PatientHistory(tuple(history)))
    for order, facts, result in zip(orders, facts_list, results, strict=True):
        got = Counter((f.code.value, f.severity.value, f.location) for f in result.findings)
        assert got == _expected(order), "\n".join(
            f"{f.code.value} {f.severity.value} {f.location}: {f.message}" for f in result.findings
        )
        status = "held" if any(f.severity is Severity.HOLD for f in result.findings) else "verified"
        assert result.status.value == status == order.get("status", status)
        sent = {normalize_icd10(d.code) for d in facts.diagnoses}
        for finding in result.findings:
            if finding.severity is Severity.HOLD:
                assert finding.clarify, f"{finding.code} has no question for the office"
            question = finding.clarify or ""
            assert not LIABILITY_WORDS.search(question), f"{finding.code} query names ABN/modifier"
            named = {normalize_icd10(c) for c in ICD10_SHAPE.findall(question)}
            proposed = {c for c in named - sent if any(c in r for r in releases)}
            assert not proposed, f"{finding.code} query names codes not sent: {proposed}"
            assert not PAYMENT_WORDS.search(question), f"{finding.code} query mentions payment"
