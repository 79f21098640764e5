"""The lab's test catalog (compendium): what each orderable test is and how it is billed.

A catalog is a CSV file with a header row (the shipped one is `code_tables/catalog/<version>/
catalog.csv`; a lab's own catalog uses the same columns, see `CATALOG_COLUMNS`):

    code,loinc,cpt,description,specimen,components,ncd,lcd,screening_cpt,diagnostic_only,
    medicare_parts

`components` are the CPT codes of a panel's components separated by spaces; `diagnostic_only`
is `yes`/`no` (empty means no); `medicare_parts` (optional column) are the codes reported to
Medicare instead of a code it does not recognise (80050 -> 80053 85025 84443). Descriptions
are our own words (never CPT descriptors).
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field

CATALOG_COLUMNS = (
    "code",
    "loinc",
    "cpt",
    "description",
    "specimen",
    "components",
    "ncd",
    "lcd",
    "screening_cpt",
    "diagnostic_only",
    "medicare_parts",
)
REQUIRED_COLUMNS = ("code", "cpt", "description")

_CPT = re.compile(r"^(\d{4}[0-9A-Z]|[A-V]\d{4})$")  # CPT (5 digits, or 4 + letter) or HCPCS II
_LOINC = re.compile(r"^\d{1,7}-\d$")
_NCD = re.compile(r"^\d{3}\.\d{1,2}$")
_LOCAL = re.compile(r"^[A-Z0-9][A-Z0-9_.\-]{0,19}$")
_YES = {"yes", "y", "true", "1"}
_NO = {"no", "n", "false", "0", ""}

# The names OBR-4.3 may give a code system (HL7 table 0396 and the spellings senders use).
# Not "HCPT": in table 0396 that is the Health Care Provider Taxonomy, not a procedure code.
LOINC_SYSTEMS = frozenset({"LN", "LOINC"})
CPT_SYSTEMS = frozenset({"CPT", "C4", "C5", "HCPCS", "HCPCS-II", "CPT4", "CPT-4"})


def loinc_check_digit_ok(loinc: str) -> bool:
    """LOINC codes end in a mod-10 check digit over the number part."""
    number, _, check = loinc.partition("-")
    if not number.isdigit() or not check.isdigit():
        return False
    digits = [int(d) for d in number]
    total = 0
    for position, digit in enumerate(reversed(digits)):
        if position % 2 == 0:
            digit *= 2
            if digit > 9:
                digit = digit // 10 + digit % 10
        total += digit
    return (10 - total % 10) % 10 == int(check)


@dataclass(frozen=True, slots=True)
class CatalogEntry:
    code: str  # the lab's local order code, e.g. "LIPID"
    loinc: str | None
    cpt: str  # CPT or HCPCS code billed for the test
    description: str  # our own words
    specimen: str
    components: tuple[str, ...] = ()  # CPT codes of a panel's components
    ncd: str | None = None  # "190.23"
    lcd: str | None = None
    screening_cpt: str | None = None  # e.g. G0103 for PSA
    diagnostic_only: bool = False
    medicare_parts: tuple[str, ...] = ()  # reported to Medicare instead of this code


@dataclass(frozen=True, slots=True)
class RowProblem:
    line: int
    reason: str


@dataclass
class CatalogReadResult:
    entries: list[CatalogEntry] = field(default_factory=list)
    problems: list[RowProblem] = field(default_factory=list)
    rows_read: int = 0


class TestCatalog:
    """Catalog entries looked up by local code, LOINC or CPT."""

    __test__ = False  # not a pytest class

    def __init__(self, version: str, entries: Iterable[CatalogEntry]) -> None:
        self.version = version
        self._entries = list(entries)
        self._by_code: dict[str, CatalogEntry] = {}
        self._by_loinc: dict[str, CatalogEntry] = {}
        self._by_cpt: dict[str, CatalogEntry] = {}
        for entry in self._entries:
            key = entry.code.upper()
            if key in self._by_code:
                raise ValueError(f"catalog {version}: local code {entry.code} appears twice")
            self._by_code[key] = entry
            if entry.loinc:
                self._by_loinc.setdefault(entry.loinc, entry)
            # several local codes may bill the same CPT; the first listed is the default
            self._by_cpt.setdefault(entry.cpt.upper(), entry)

    def __iter__(self) -> Iterator[CatalogEntry]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def by_code(self, local: str) -> CatalogEntry | None:
        return self._by_code.get(local.strip().upper())

    def by_loinc(self, loinc: str) -> CatalogEntry | None:
        return self._by_loinc.get(loinc.strip())

    def by_cpt(self, cpt: str) -> CatalogEntry | None:
        return self._by_cpt.get(cpt.strip().upper())

    def resolve(
        self, code: str, system: str, interface_codes: Mapping[str, str] | None = None
    ) -> CatalogEntry | None:
        """The catalog entry an OBR-4 code names.

        `system` is OBR-4.3 as sent: LN -> LOINC; CPT/C4/HCPCS -> CPT; anything else is the
        sender's local code, mapped through the interface's `[test_codes]` table first and
        then tried as one of the lab's own codes.
        """
        code = code.strip()
        if not code:
            return None
        upper_system = system.strip().upper()
        if upper_system in LOINC_SYSTEMS:
            return self.by_loinc(code)
        if upper_system in CPT_SYSTEMS:
            return self.by_cpt(code)
        if interface_codes:
            mapped = interface_codes.get(code)
            if mapped is None:
                mapped = next(
                    (v for k, v in interface_codes.items() if k.upper() == code.upper()), None
                )
            if mapped is not None:
                return self.by_code(mapped)
        return self.by_code(code)


def read_catalog_csv(text: str) -> CatalogReadResult:
    """Parse a catalog CSV; good rows become entries, bad rows are reported with a reason."""
    result = CatalogReadResult()
    reader = csv.DictReader(io.StringIO(text))
    header = [h.strip().lower() for h in (reader.fieldnames or [])]
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    if missing:
        result.problems.append(RowProblem(1, f"heading lacks column(s): {', '.join(missing)}"))
        return result
    reader.fieldnames = header
    seen: dict[str, int] = {}
    for row in reader:
        result.rows_read += 1
        line = reader.line_num
        values = {k: (v or "").strip() for k, v in row.items() if k is not None}
        try:
            entry = _entry_from_row(values)
        except ValueError as exc:
            result.problems.append(RowProblem(line, str(exc)))
            continue
        key = entry.code.upper()
        if key in seen:
            result.problems.append(
                RowProblem(line, f"local code repeated: {entry.code} (first on line {seen[key]})")
            )
            continue
        seen[key] = line
        result.entries.append(entry)
    return result


def _entry_from_row(values: Mapping[str, str]) -> CatalogEntry:
    code = values.get("code", "").upper()
    if not _LOCAL.match(code):
        raise ValueError(f"bad local code (empty, or not A-Z 0-9 _.-): {code!r}")
    cpt = values.get("cpt", "").upper()
    if not _CPT.match(cpt):
        raise ValueError(f"CPT/HCPCS is not a 5-character procedure code: {code} {cpt!r}")
    description = values.get("description", "")
    if not description:
        raise ValueError(f"description is empty: {code}")
    loinc = values.get("loinc", "") or None
    if loinc is not None and not (_LOINC.match(loinc) and loinc_check_digit_ok(loinc)):
        raise ValueError(f"LOINC malformed or fails its check digit: {code} {loinc!r}")
    components = tuple(values.get("components", "").upper().split())
    bad = [c for c in components if not _CPT.match(c)]
    if bad:
        raise ValueError(f"panel component is not a procedure code: {code} {' '.join(bad)}")
    ncd = values.get("ncd", "") or None
    if ncd is not None and not _NCD.match(ncd):
        raise ValueError(f"NCD number not like 190.23: {code} {ncd!r}")
    screening = values.get("screening_cpt", "").upper() or None
    if screening is not None and not _CPT.match(screening):
        raise ValueError(f"screening code is not a procedure code: {code} {screening!r}")
    medicare_parts = tuple(values.get("medicare_parts", "").upper().split())
    bad = [c for c in medicare_parts if not _CPT.match(c)]
    if bad:
        raise ValueError(f"Medicare part is not a procedure code: {code} {' '.join(bad)}")
    flag = values.get("diagnostic_only", "").lower()
    if flag not in _YES | _NO:
        raise ValueError(f"diagnostic_only must be yes or no: {code} {flag!r}")
    return CatalogEntry(
        code=code,
        loinc=loinc,
        cpt=cpt,
        description=description,
        specimen=values.get("specimen", ""),
        components=components,
        ncd=ncd,
        lcd=values.get("lcd", "") or None,
        screening_cpt=screening,
        diagnostic_only=flag in _YES,
        medicare_parts=medicare_parts,
    )


def format_catalog_csv(entries: Iterable[CatalogEntry]) -> str:
    """The CSV text of a catalog, in the shipped column order."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CATALOG_COLUMNS)
    for e in entries:
        writer.writerow(
            [
                e.code,
                e.loinc or "",
                e.cpt,
                e.description,
                e.specimen,
                " ".join(e.components),
                e.ncd or "",
                e.lcd or "",
                e.screening_cpt or "",
                "yes" if e.diagnostic_only else "",
                " ".join(e.medicare_parts),
            ]
        )
    return out.getvalue()
