"""Coverage policies as data: Medicare lab NCDs, local (LCD) policies, screening rules, the
codes never covered for any lab NCD, and which payers the Medicare rules apply to.

The values here are read from `code_tables/coverage/<version>/` by `labintake.codes.coverage`;
this module holds only the shapes and their matching logic (pure).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from labintake.codes.icd10 import normalize_icd10

if TYPE_CHECKING:
    from labintake.codes.screening import ScreeningBenefit

# CPT (five digits, or four and a category II/III or PLA letter) or HCPCS level II (a letter
# and four digits).
PROCEDURE_CODE = re.compile(r"^([0-9]{4}[0-9FTU]|[A-Z][0-9]{4})$")


_BLANKS_AND_DOTS = re.compile(r"[\s.]+")


def _bare(code: str) -> str:
    return _BLANKS_AND_DOTS.sub("", code).upper()


class CodeSet:
    """A set of ICD-10-CM codes written the way coverage lists write them.

    - exact codes: `E11.9` (matches only that code)
    - dotted-prefix wildcards: `E11.*`, `E11*`, `E11.-` (the code and everything below it)
    - ranges: `E78.00-E78.5`, `E08-E13` (inclusive; the upper bound includes codes below it,
      so `E08-E13` covers E13.9 and `E78.00-E78.5` covers E78.51)

    Ranges compare codes without their dot, character by character in ASCII order (digits
    before letters), which is the order of the shipped ICD-10-CM table: `E08.00-E13.9` covers
    E11.65, E13.10 and E11.A. Four categories sit elsewhere in the printed tabular list than in
    that order (C4A, D3A, M1A, Z3A sort after C49, D39, M19, Z39): a range meant to take them in
    must name them, e.g. `D37.01-D3A.8`, or list them as prefixes.
    """

    __slots__ = ("_exact", "_patterns", "_prefixes", "_ranges")

    def __init__(
        self,
        exact: Iterable[str] = (),
        prefixes: Iterable[str] = (),
        ranges: Iterable[tuple[str, str]] = (),
    ) -> None:
        self._exact = frozenset(_bare(c) for c in exact)
        self._prefixes = frozenset(_bare(p) for p in prefixes)
        self._ranges = tuple((_bare(lo), _bare(hi)) for lo, hi in ranges)
        self._patterns: tuple[str, ...] = ()

    @classmethod
    def parse(cls, patterns: Iterable[str]) -> CodeSet:
        """Build from written patterns; raises ValueError on one that is not a code, prefix or
        range (so a typo in policy data is refused at load time, not silently ignored)."""
        exact: list[str] = []
        prefixes: list[str] = []
        ranges: list[tuple[str, str]] = []
        written: list[str] = []
        for raw in patterns:
            pattern = raw.strip().upper()
            if not pattern:
                continue
            written.append(pattern)
            stem = _prefix_stem(pattern)
            if stem is not None:
                _check(stem, raw)
                prefixes.append(stem)
            elif "-" in pattern:
                lo, _, hi = pattern.partition("-")
                _check(lo, raw)
                _check(hi, raw)
                if _bare(lo) > _bare(hi):
                    raise ValueError(f"range {raw!r} runs backwards")
                ranges.append((lo, hi))
            else:
                _check(pattern, raw)
                exact.append(pattern)
        code_set = cls(exact, prefixes, ranges)
        code_set._patterns = tuple(written)
        return code_set

    @property
    def patterns(self) -> tuple[str, ...]:
        """The patterns as written (normalised to upper case)."""
        if self._patterns:
            return self._patterns
        return (
            tuple(sorted(normalize_icd10(c) for c in self._exact))
            + tuple(
                f"{normalize_icd10(p)}{'.*' if len(p) == 3 else '*'}"
                for p in sorted(self._prefixes)
            )
            + tuple(f"{normalize_icd10(lo)}-{normalize_icd10(hi)}" for lo, hi in self._ranges)
        )

    def matches(self, code: str) -> bool:
        bare = _bare(code)
        if bare in self._exact:
            return True
        if self._prefixes and any(bare[:n] in self._prefixes for n in range(3, len(bare) + 1)):
            return True
        return any(bare >= lo and bare[: len(hi)] <= hi for lo, hi in self._ranges)

    def __contains__(self, code: object) -> bool:
        return isinstance(code, str) and self.matches(code)

    def __bool__(self) -> bool:
        return bool(self._exact or self._prefixes or self._ranges)

    def __len__(self) -> int:
        return len(self._exact) + len(self._prefixes) + len(self._ranges)

    def __repr__(self) -> str:
        shown = ", ".join(self.patterns[:6])
        more = "..." if len(self) > 6 else ""
        return f"CodeSet([{shown}{more}])"

    def union(self, other: CodeSet) -> CodeSet:
        merged = CodeSet(
            self._exact | other._exact,
            self._prefixes | other._prefixes,
            self._ranges + other._ranges,
        )
        merged._patterns = tuple(dict.fromkeys(self.patterns + other.patterns))
        return merged


EMPTY = CodeSet()

# ICD-10-CM shape: a letter, a digit, a digit or letter (the category), then up to four more
# characters after the dot. The dot may be left out (E119), but not put anywhere else.
_PATTERN_CODE = re.compile(r"^[A-Z][0-9][0-9A-Z](\.?[0-9A-Z]{1,4})?$")


def _prefix_stem(pattern: str) -> str | None:
    """The code a wildcard pattern stands on (`E11.*`, `E11*`, `E11.-`, `E11-` -> `E11`), or
    None when the pattern is not a wildcard. One marker only: `E11**` or `E11..*` stay
    malformed and are refused by the shape check."""
    for marker in (".*", "*", ".-"):
        if pattern.endswith(marker):
            return pattern.removesuffix(marker)
    if pattern.endswith("-") and pattern.count("-") == 1:
        return pattern.removesuffix("-")
    return None


def _check(code: str, raw: str) -> None:
    if not _PATTERN_CODE.match(code.strip().upper()):
        raise ValueError(f"{raw!r} is not an ICD-10-CM code, prefix (E11.*) or range (E08-E13)")


@dataclass(frozen=True)
class FrequencyLimit:
    """At most `max_count` of these tests per patient in a window of `period_days` days (or
    `period_months` calendar months, when given).

    `when_dx`: the limit applies only when the order carries one of these diagnoses; None
    applies it always. `exempt_dx`: diagnoses for which the policy allows more frequent
    testing (e.g. uncontrolled diabetes or pregnancy for HbA1c): with one of them the limit
    does not apply. `counts`: the codes whose earlier tests count (default `cpts`), e.g. only
    the lipid panel for the panel's yearly limit. `statutory`: a hard limit (a hold); NCD
    frequency text is guidance for stable patients (a warning). `verify` marks a figure not yet
    confirmed against the current NCD text.
    """

    cpts: tuple[str, ...]
    max_count: int
    period_days: int
    when_dx: CodeSet | None
    description: str
    verify: bool = False
    min_age: int | None = None
    sex: str | None = None
    period_months: int | None = None
    exempt_dx: CodeSet | None = None
    counts: tuple[str, ...] = ()
    statutory: bool = False

    @property
    def counted(self) -> tuple[str, ...]:
        return self.counts or self.cpts


@dataclass(frozen=True)
class FrequencyStatement:
    """A frequency statement of an NCD as its text gives it, with where it was read.

    Recorded as data next to the `FrequencyLimit`s the engine enforces: a statement may be
    enforced by one of those limits (`enforced_by` names the limit's description), or not yet
    (diagnosis-aware statements such as "more often when the regimen changed").
    """

    text: str
    source: str
    cpts: tuple[str, ...] = ()
    enforced_by: str = ""
    verify: bool = False


@dataclass(frozen=True)
class NcdPolicy:
    """One national (or local) coverage policy for lab tests.

    `covered`: diagnoses that support the tests. `not_covered`: the negative lists (not covered
    and does-not-support). `inverted` policies (190.15 blood counts) cover everything except
    `not_covered`. `complete` False: the lists are known to be partial, so a diagnosis on
    neither list is unknown to the policy (necessity "unverified"), not unsupported; `missing`
    (or `notes`) says what is not transcribed. An incomplete policy with empty lists (190.12,
    190.13, 190.14, 190.19: no list could be read) thus holds only diagnoses on the all-NCD
    never-covered list and leaves every other one unverified.
    """

    ncd: str
    title: str
    cpts: tuple[str, ...]
    covered: CodeSet
    not_covered: CodeSet
    inverted: bool
    frequency: tuple[FrequencyLimit, ...]
    illustrative: bool
    source: str = ""
    effective: str = ""
    kind: str = "NCD"  # NCD | LCD
    notes: str = ""
    complete: bool = True
    missing: str = ""
    read_on: str = ""
    sources: tuple[str, ...] = ()
    frequency_statements: tuple[FrequencyStatement, ...] = ()

    def supports(self, code: str) -> bool:
        """True when the policy's lists say this diagnosis supports the tests."""
        if self.not_covered.matches(code):
            return False
        return True if self.inverted else self.covered.matches(code)


MEDICARE_PLAN_TYPES = frozenset({"medicare", "medicare-advantage", "railroad-medicare"})
PLAN_TYPES = MEDICARE_PLAN_TYPES | frozenset(
    {"medicare-supplement", "medicaid", "commercial", "workers-comp", "self-pay", "other"}
)


def _first(value: str) -> str:
    """The first component of an HL7 value (`60054^^^BCBSIL` -> `60054`), upper case."""
    return value.split("^", 1)[0].strip().upper()


def _name(value: str) -> str:
    return " ".join(value.upper().split())


@dataclass(frozen=True)
class PayerPlan:
    """One payer (or one plan of a payer) and its type.

    Matched on the insurance as sent: IN1-3 company id in `company_ids` and, when `plan_ids`
    is not empty, IN1-2 plan id in `plan_ids` (a plan id alone when there are no company ids);
    or IN1-4 company name equal to one of `names`
    (whole name, case and spacing ignored). Medicare Advantage plans must cover what the NCDs
    cover (42 CFR 422.101(b)), so their type applies the Medicare lab rules like Part B.
    """

    type: str
    name: str = ""
    company_ids: frozenset[str] = frozenset()
    plan_ids: frozenset[str] = frozenset()
    names: frozenset[str] = frozenset()
    source: str = ""

    @property
    def medicare_rules(self) -> bool:
        return self.type in MEDICARE_PLAN_TYPES

    def matches_ids(self, company: str, plan: str) -> bool:
        if not self.company_ids:  # a plan id alone names the plan
            return bool(plan) and plan in self.plan_ids
        if not company or company not in self.company_ids:
            return False
        return not self.plan_ids or plan in self.plan_ids


@dataclass(frozen=True)
class PayerRules:
    """Which insurances (IN1-2/3/4) the Medicare lab rules apply to: the payer table `plans`
    (most specific match first: company and plan id, company id, whole name), then the older
    `[medicare]` id lists. `name_contains` is empty unless a lab configures it: the word
    MEDICARE in a name says little (supplement plans, commercial plans named after it)."""

    company_ids: frozenset[str] = frozenset()
    plan_ids: frozenset[str] = frozenset()
    name_contains: tuple[str, ...] = ()
    name_excludes: tuple[str, ...] = ()
    plans: tuple[PayerPlan, ...] = ()

    def plan_for(self, company_id: str, company_name: str, plan_id: str) -> PayerPlan | None:
        company, plan = _first(company_id), _first(plan_id)
        for specific in (True, False):
            for candidate in self.plans:
                if bool(candidate.plan_ids) is specific and candidate.matches_ids(company, plan):
                    return candidate
        name = _name(company_name)
        return next((p for p in self.plans if name and name in p.names), None)

    def applies(self, company_id: str, company_name: str, plan_id: str) -> bool:
        found = self.plan_for(company_id, company_name, plan_id)
        if found is not None:
            return found.medicare_rules
        company, plan = _first(company_id), _first(plan_id)
        if company and company in self.company_ids:
            return True
        if plan and plan in self.plan_ids:
            return True
        name = company_name.upper()
        if any(word in name for word in self.name_excludes):
            return False
        return any(word in name for word in self.name_contains)


@dataclass
class CoveragePolicies:
    """Everything coverage: NCDs and LCDs by CPT, screening benefits, never-covered diagnoses."""

    version: str
    never_covered: CodeSet = field(default_factory=CodeSet)
    screening: tuple[ScreeningBenefit, ...] = ()
    ncds: tuple[NcdPolicy, ...] = ()
    lcds: tuple[NcdPolicy, ...] = ()
    payers: PayerRules = field(default_factory=PayerRules)

    def __post_init__(self) -> None:
        self._ncd_by_cpt: dict[str, list[NcdPolicy]] = {}
        self._lcd_by_cpt: dict[str, list[NcdPolicy]] = {}
        for policy in self.ncds:
            for cpt in policy.cpts:
                self._ncd_by_cpt.setdefault(cpt.upper(), []).append(policy)
        for policy in self.lcds:
            for cpt in policy.cpts:
                self._lcd_by_cpt.setdefault(cpt.upper(), []).append(policy)
        self._screening_by_cpt: dict[str, list[ScreeningBenefit]] = {}
        self._screening_by_diagnostic: dict[str, list[ScreeningBenefit]] = {}
        for benefit in self.screening:
            for cpt in benefit.screening_cpts:
                self._screening_by_cpt.setdefault(cpt, []).append(benefit)
            for cpt in benefit.diagnostic_codes:
                self._screening_by_diagnostic.setdefault(cpt, []).append(benefit)

    def for_cpt(self, cpt: str) -> list[NcdPolicy]:
        return list(self._ncd_by_cpt.get(cpt.strip().upper(), ()))

    def lcd_for_cpt(self, cpt: str) -> list[NcdPolicy]:
        return list(self._lcd_by_cpt.get(cpt.strip().upper(), ()))

    def ncd(self, number: str) -> NcdPolicy | None:
        return next((p for p in self.ncds if p.ncd == number), None)

    def medicare_applies(self, company_id: str, company_name: str, plan_id: str = "") -> bool:
        return self.payers.applies(company_id, company_name, plan_id)

    def screening_for(self, dx: str) -> list[ScreeningBenefit]:
        return [benefit for benefit in self.screening if benefit.dx.matches(dx)]

    def screening_by_cpt(self, cpt: str) -> list[ScreeningBenefit]:
        """Benefits whose screening codes include `cpt`."""
        return self._screening_by_cpt.get(cpt.strip().upper(), [])

    def screening_on_diagnostic(self, cpt: str) -> list[ScreeningBenefit]:
        """Benefits naming `cpt` as a diagnostic code or a code outside the benefit."""
        return self._screening_by_diagnostic.get(cpt.strip().upper(), [])
