"""Medicare screening benefits as data: who is eligible, which codes and diagnosis they pair,
and how often (`code_tables/coverage/<version>/screening.toml`, read by
`labintake.codes.coverage`).

A screening benefit is statutory (Social Security Act 1861(s)/(ddd), 42 CFR 410.17-410.39, NCDs
210.x): outside its eligibility the screening is excluded from Medicare (modifier GY, GX with a
voluntary ABN), and its frequency limits are hard. The rules using these shapes live in
`labintake.verification.screening`.

    [[benefit]]
    name = "prostate"                      # short key, used in findings
    title = "Prostate cancer screening PSA"
    dx = ["Z12.5"]                         # the screening diagnosis the benefit needs
    screening_cpts = ["G0103"]             # codes billed for the screening
    dedicated = true                       # those codes mean screening and need `dx`
    diagnostic_cpts = { "84153" = "G0103" } # diagnostic code -> screening code to bill instead
    outside_cpts = ["84152", "84154"]      # with `dx`: a screening the benefit does not cover
    source = "42 CFR 410.39; Pub. 100-04 ch. 18 s. 50"
    [benefit.eligibility]
    sex = "M"; min_age = 50; age_from = "day_after_birthday"   # or "birthday" (default)
    max_age = 65; birth_years = [1945, 1965]; risk_dx = ["Z72.89"]  # risk_dx: any age/year
    [[benefit.frequency]]                  # the first whose `when_dx` matches applies
    max_count = 1
    full_months = 11                       # | rolling_months = 12 | lifetime = true
    since = 2014-06-02                     # lifetime: the benefit's start (history look-back)
    when_dx = ["F19.20"]                   # optional
    hard = true                            # false: guidance only (a warning)
    description = "..."
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from labintake.codes.policies import EMPTY, PROCEDURE_CODE, CodeSet

AGE_FROM = ("birthday", "day_after_birthday")


@dataclass(frozen=True)
class Eligibility:
    """Who the benefit covers. `risk_dx`: diagnoses that make a patient eligible whatever
    the age or birth year (e.g. increased risk for HIV outside ages 15-65)."""

    sex: str | None = None
    min_age: int | None = None
    max_age: int | None = None
    age_from: str = "birthday"  # day_after_birthday: 'over 50' starts the day after
    birth_years: tuple[int, int] | None = None
    risk_dx: CodeSet = field(default_factory=CodeSet)
    description: str = ""


@dataclass(frozen=True)
class ScreeningFrequency:
    """At most `max_count` screenings: after `full_months` full months following the month of
    the last one, within `rolling_months` months, or once in a lifetime."""

    max_count: int
    description: str
    full_months: int | None = None
    rolling_months: int | None = None
    lifetime: bool = False
    when_dx: CodeSet | None = None
    hard: bool = True
    since: date | None = None  # the benefit's start: how far back "a lifetime" looks

    @property
    def window_months(self) -> int | None:
        """How far back the history must reach (None: the whole life)."""
        if self.lifetime:
            return None
        if self.full_months is not None:
            return self.full_months + 2
        return self.rolling_months


@dataclass(frozen=True)
class ScreeningBenefit:
    name: str
    title: str
    dx: CodeSet
    screening_cpts: tuple[str, ...]
    dedicated: bool = False
    diagnostic_cpts: Mapping[str, str] = field(default_factory=dict)
    outside_cpts: tuple[str, ...] = ()
    eligibility: Eligibility = field(default_factory=Eligibility)
    frequency: tuple[ScreeningFrequency, ...] = ()
    source: str = ""
    verify: bool = False  # a figure or list not yet confirmed against the source

    def frequency_for(self, diagnoses: list[str]) -> ScreeningFrequency | None:
        for limit in self.frequency:
            if limit.when_dx is None or any(limit.when_dx.matches(c) for c in diagnoses):
                return limit
        return None

    @property
    def diagnostic_codes(self) -> tuple[str, ...]:
        return tuple(self.diagnostic_cpts) + self.outside_cpts


def _codes(value: Any, where: str) -> CodeSet:
    if value is None:
        return EMPTY
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"{where}: expected a list of diagnosis codes")
    return CodeSet.parse(value)


def _cpts(value: Any, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"{where}: expected a list of procedure codes")
    codes = tuple(v.strip().upper() for v in value if v.strip())
    bad = [c for c in codes if not PROCEDURE_CODE.match(c)]
    if bad:
        raise ValueError(f"{where}: not CPT/HCPCS procedure codes: {', '.join(bad)}")
    return codes


def _optional_int(data: Mapping[str, Any], key: str) -> int | None:
    value = data.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{key} must be a whole number, got {value!r}")
    return value


def eligibility_from_toml(data: Mapping[str, Any], where: str) -> Eligibility:
    age_from = str(data.get("age_from", "birthday"))
    if age_from not in AGE_FROM:
        raise ValueError(f"{where}: age_from must be one of {AGE_FROM}")
    years = data.get("birth_years")
    birth_years: tuple[int, int] | None = None
    if years is not None:
        pair = isinstance(years, list) and len(years) == 2
        if not pair or not all(isinstance(y, int) for y in years):
            raise ValueError(f"{where}: birth_years must be [first, last]")
        birth_years = (years[0], years[1])
    sex = data.get("sex")
    return Eligibility(
        sex=str(sex).upper()[:1] if sex else None,
        min_age=_optional_int(data, "min_age"),
        max_age=_optional_int(data, "max_age"),
        age_from=age_from,
        birth_years=birth_years,
        risk_dx=_codes(data.get("risk_dx"), f"{where} risk_dx"),
        description=str(data.get("description", "")),
    )


def frequency_from_toml(data: Mapping[str, Any], where: str) -> ScreeningFrequency:
    full = _optional_int(data, "full_months")
    rolling = _optional_int(data, "rolling_months")
    lifetime = bool(data.get("lifetime", False))
    if sum((full is not None, rolling is not None, lifetime)) != 1:
        raise ValueError(f"{where}: give exactly one of full_months, rolling_months, lifetime")
    count = _optional_int(data, "max_count")
    if not count:
        raise ValueError(f"{where}: max_count must be 1 or more")
    when = data.get("when_dx")
    since = data.get("since")
    if since is not None and not isinstance(since, date):
        raise ValueError(f"{where}: since must be a date (YYYY-MM-DD, unquoted)")
    return ScreeningFrequency(
        max_count=count,
        description=str(data.get("description", "")),
        full_months=full,
        rolling_months=rolling,
        lifetime=lifetime,
        when_dx=_codes(when, f"{where} when_dx") if when is not None else None,
        hard=bool(data.get("hard", True)),
        since=since,
    )


def benefit_from_toml(data: Mapping[str, Any], where: str) -> ScreeningBenefit:
    """One `[[benefit]]`; ValueError or KeyError naming what is wrong."""
    diagnostic = data.get("diagnostic_cpts", {})
    if not isinstance(diagnostic, Mapping):
        raise ValueError(f"{where}: diagnostic_cpts must map a diagnostic code to a screening one")
    screening_cpts = _cpts(data["screening_cpts"], f"{where} screening_cpts")
    if not screening_cpts:
        raise ValueError(f"{where}: screening_cpts is empty")
    return ScreeningBenefit(
        name=str(data["name"]),
        title=str(data["title"]),
        dx=_codes(data["dx"], f"{where} dx"),
        screening_cpts=screening_cpts,
        dedicated=bool(data.get("dedicated", False)),
        diagnostic_cpts={str(k).upper(): str(v).upper() for k, v in diagnostic.items()},
        outside_cpts=_cpts(data.get("outside_cpts"), f"{where} outside_cpts"),
        eligibility=eligibility_from_toml(data.get("eligibility", {}), f"{where} eligibility"),
        frequency=tuple(
            frequency_from_toml(f, f"{where} frequency[{i}]")
            for i, f in enumerate(data.get("frequency", []))
        ),
        source=str(data.get("source", "")),
        verify=bool(data.get("verify", False)),
    )
