"""What the rules produce: findings, the resolved tests, and the result of one verification."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from labintake.statuses import FindingCode, OrderStatus, Severity

_EMPTY: Mapping[str, Any] = MappingProxyType({})

# Medical-necessity outcome per test, for the coder's inline view.
NECESSITY_PASS = "pass"  # noqa: S105 - an outcome, not a secret
NECESSITY_FAIL = "fail"
NECESSITY_UNVERIFIED = "unverified"  # the test could not be resolved or no valid diagnosis
NECESSITY_NOT_APPLICABLE = "not_applicable"  # no policy for the test, or not a Medicare payer


@dataclass(frozen=True, slots=True)
class Finding:
    """One reason to look at an order.

    `location` is the HL7 place the finding is about ("DG1[2]-3", "OBR[1]-4", "ORC-12").
    `message` explains it to a coder. `clarify` is what to ask the ordering office: open-ended,
    citing what the order shows, never proposing a code, never mentioning payment.
    `subject` names what the finding is about (a diagnosis code, a test, a pair) so the same
    finding can be recognised when an order is verified again.
    """

    code: FindingCode
    severity: Severity
    location: str
    message: str
    clarify: str | None = None
    test_seq: int | None = None
    subject: str = ""
    reference: Mapping[str, Any] = field(default_factory=lambda: _EMPTY)

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.code, self.location, self.subject)

    @property
    def is_hold(self) -> bool:
        return self.severity is Severity.HOLD


@dataclass(frozen=True, slots=True)
class ResolvedTest:
    """A requested test matched to the lab's catalog (all None when it could not be)."""

    seq: int
    location: str
    local_code: str | None
    loinc: str | None
    cpt: str | None
    description: str = ""
    necessity: str = NECESSITY_NOT_APPLICABLE
    policies: tuple[str, ...] = ()  # NCD/LCD ids that applied, e.g. ("190.23",)


@dataclass(frozen=True, slots=True)
class VerificationResult:
    status: OrderStatus  # VERIFIED or HELD
    findings: tuple[Finding, ...]
    tests: tuple[ResolvedTest, ...]
    table_versions: Mapping[str, str]
    rules_version: str

    @property
    def holds(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.severity is Severity.HOLD)

    def codes(self) -> list[str]:
        return [f.code for f in self.findings]
