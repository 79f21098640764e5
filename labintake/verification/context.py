"""The working state of one verification: the facts, the tables in force, and the findings."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from labintake.statuses import FindingCode, Severity
from labintake.verification.facts import OrderFacts, PatientHistory, Priors, TestFacts
from labintake.verification.findings import Finding
from labintake.verification.rule_settings import DEFAULT_SEVERITY, EffectiveRules

if TYPE_CHECKING:
    from labintake.codes.bundling import Bundling
    from labintake.codes.catalog import CatalogEntry, TestCatalog
    from labintake.codes.dx_edits import DiagnosisEdits
    from labintake.codes.icd10 import Icd10Entry, Icd10Release
    from labintake.codes.policies import CoveragePolicies
    from labintake.codes.screening import ScreeningBenefit
    from labintake.codes.tables import CodeTables


@dataclass(slots=True)
class ValidDiagnosis:
    """A diagnosis found in the release in force (billable or not)."""

    code: str  # normalised
    location: str
    entry: Icd10Entry


@dataclass(slots=True)
class RuleContext:
    facts: OrderFacts
    history: PatientHistory  # the patient's other messages (not this message's groups)
    tables: CodeTables
    release: Icd10Release | None
    catalog: TestCatalog
    policies: CoveragePolicies
    bundling: Bundling
    medicare: bool
    rules: EffectiveRules
    dx_edits: DiagnosisEdits
    # `history` and the groups of this message before this one, as the history rules look
    # them up (see labintake.verification.facts.PriorIndex)
    priors: Priors
    group_ref: str = ""  # how findings on other groups of the message name this one
    group_index: int = 1  # position among the message's order groups
    # filled by the rules as they run
    resolved: list[CatalogEntry | None] = field(default_factory=list)
    diagnoses: list[ValidDiagnosis] = field(default_factory=list)
    necessity: dict[int, str] = field(default_factory=dict)  # test seq -> outcome
    policies_applied: dict[int, tuple[str, ...]] = field(default_factory=dict)
    # tests ordered as a screening (seq -> its benefit): their frequency is the benefit's
    screening_use: dict[int, ScreeningBenefit] = field(default_factory=dict)
    duplicate_lines: set[int] = field(default_factory=set)  # seqs repeating a line of this order
    findings: list[Finding] = field(default_factory=list)
    # False when no loaded ICD-10-CM release covers the date and `release` is the newest one
    release_in_force: bool = True

    def add(
        self,
        code: FindingCode,
        location: str,
        message: str,
        clarify: str | None = None,
        *,
        test_seq: int | None = None,
        subject: str = "",
        reference: Mapping[str, Any] | None = None,
        severity: Severity | None = None,
    ) -> None:
        """Record a finding at the severity the settings give it (or drop it if turned off)."""
        chosen = self.rules.apply(code, severity or DEFAULT_SEVERITY[code])
        if chosen is None:
            return
        self.findings.append(
            Finding(
                code=code,
                severity=chosen,
                location=location,
                message=message,
                clarify=clarify,
                test_seq=test_seq,
                subject=subject,
                reference=MappingProxyType(dict(reference)) if reference else MappingProxyType({}),
            )
        )

    def test_name(self, test: TestFacts) -> str:
        """How to name a test in a message: catalog description, else the text sent."""
        entry = self.resolved[test.seq - 1] if test.seq - 1 < len(self.resolved) else None
        if entry is not None:
            return entry.description
        return test.text or test.code or "the test"

    def diagnosis_list(self) -> str:
        """The order's readable diagnoses for a message: 'E78.5 (hyperlipidemia), ...'."""
        if not self.diagnoses:
            return ", ".join(d.code for d in self.facts.diagnoses) or "none"
        return ", ".join(f"{d.code} ({d.entry.description})" for d in self.diagnoses)
