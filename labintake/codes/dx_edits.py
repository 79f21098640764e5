"""Diagnosis edits by patient sex and age, as data (`code_tables/dxedits/<version>/edits.toml`).

The edits follow the categories of the CMS Medicare Code Editor (MCE): diagnoses for one sex
only, and diagnoses for newborns (age 0), pediatric patients (0-17), maternity (9-64) and
adults (15-124). Each edit is a list of ICD-10-CM code patterns in `CodeSet` syntax with the
source it rests on, so a lab can correct or extend a list without touching the rules:

    [[sex]]
    name = "female genital organs"
    sex = "F"                         # the only PID-8 value the codes fit
    codes = ["C51-C58", "N70-N98"]
    source = "ICD-10-CM Tabular, block titles ...; MCE sex conflict edit"

    [[age]]
    name = "maternity"
    min_age = 9                       # years on the date of service, inclusive
    max_age = 64
    codes = ["O00-O9A"]
    source = "..."
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date

from labintake.codes.policies import CodeSet

SEXES = {"F": "female", "M": "male"}
EDITS_FILE = "edits.toml"
_MEMO_LIMIT = 65_536  # codes whose matching edits are remembered (then forgotten at once)


@dataclass(frozen=True)
class SexEdit:
    name: str
    sex: str  # "F" or "M": the patients the codes are for
    codes: CodeSet
    source: str


@dataclass(frozen=True)
class AgeEdit:
    name: str
    min_age: int
    max_age: int
    codes: CodeSet
    source: str

    def allows(self, age: int) -> bool:
        return self.min_age <= age <= self.max_age


class DiagnosisEdits:
    """The sex and age edits of one table version."""

    def __init__(
        self, version: str, sex: Iterable[SexEdit] = (), age: Iterable[AgeEdit] = ()
    ) -> None:
        self.version = version
        self.sex_edits = tuple(sex)
        self.age_edits = tuple(age)
        self._matching: dict[str, tuple[tuple[SexEdit, ...], tuple[AgeEdit, ...]]] = {}

    def __len__(self) -> int:
        return len(self.sex_edits) + len(self.age_edits)

    def sex_conflict(self, code: str, sex: str) -> SexEdit | None:
        """The edit `code` breaks for a patient of `sex` (F/M; anything else is not checked)."""
        sex = sex.strip().upper()[:1]
        if sex not in SEXES:
            return None
        for edit in self._edits_matching(code)[0]:
            if edit.sex != sex:
                return edit
        return None

    def age_conflict(self, code: str, age: int) -> AgeEdit | None:
        for edit in self._edits_matching(code)[1]:
            if not edit.allows(age):
                return edit
        return None

    def _edits_matching(self, code: str) -> tuple[tuple[SexEdit, ...], tuple[AgeEdit, ...]]:
        """The sex and age edits whose codes take `code`, in table order. Remembered per code:
        every order's diagnoses are checked against every edit, and the same codes recur."""
        found = self._matching.get(code)
        if found is None:
            if len(self._matching) >= _MEMO_LIMIT:
                self._matching.clear()
            found = (
                tuple(edit for edit in self.sex_edits if edit.codes.matches(code)),
                tuple(edit for edit in self.age_edits if edit.codes.matches(code)),
            )
            self._matching[code] = found
        return found


def age_on(birth: date, day: date) -> int:
    """Completed years on `day`."""
    return day.year - birth.year - ((day.month, day.day) < (birth.month, birth.day))


def read_dx_edits_toml(text: str, version: str, where: str) -> DiagnosisEdits:
    """Parse `edits.toml`; ValueError naming the place of any bad entry."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{where}: {exc}") from exc
    sex_edits: list[SexEdit] = []
    for i, raw in enumerate(data.get("sex", []), start=1):
        place = f"{where} [[sex]] #{i}"
        sex = str(raw.get("sex", "")).upper()
        if sex not in SEXES:
            raise ValueError(f"{place}: sex must be F or M, not {sex!r}")
        sex_edits.append(SexEdit(_name(raw, place), sex, _codes(raw, place), _source(raw, place)))
    age_edits: list[AgeEdit] = []
    for i, raw in enumerate(data.get("age", []), start=1):
        place = f"{where} [[age]] #{i}"
        low, high = raw.get("min_age"), raw.get("max_age")
        if not isinstance(low, int) or not isinstance(high, int) or not 0 <= low <= high:
            raise ValueError(f"{place}: min_age and max_age must be whole years, min <= max")
        age_edits.append(
            AgeEdit(_name(raw, place), low, high, _codes(raw, place), _source(raw, place))
        )
    return DiagnosisEdits(version, sex_edits, age_edits)


def _name(raw: dict[str, object], place: str) -> str:
    name = str(raw.get("name", "")).strip()
    if not name:
        raise ValueError(f"{place}: name is empty")
    return name


def _source(raw: dict[str, object], place: str) -> str:
    source = str(raw.get("source", "")).strip()
    if not source:
        raise ValueError(f"{place}: every edit names its source")
    return source


def _codes(raw: dict[str, object], place: str) -> CodeSet:
    codes = raw.get("codes")
    if not isinstance(codes, list) or not codes:
        raise ValueError(f"{place}: codes must be a non-empty list of patterns")
    try:
        return CodeSet.parse(str(c) for c in codes)
    except ValueError as exc:
        raise ValueError(f"{place}: {exc}") from exc
