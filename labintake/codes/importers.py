"""Readers for the official files a lab brings in (`labintake codes import KIND FILE`).

Each reader takes the file's text and returns what it kept plus every rejected row with its
line number and reason; nothing is dropped silently. Rows outside the lab's scope (PTP/MUE
rows for non-laboratory codes) are counted as skipped, not rejected.

Layouts:

- ncci-ptp: the CMS NCCI practitioner PTP edit text file, tab-separated. Lines before the
  first data row (title, column headings) are ignored. Data rows: column 1 code, column 2 code,
  "*" when in existence before 1996 (or empty), effective date YYYYMMDD, deletion date
  YYYYMMDD or "*" (none), modifier indicator 0/1/9, edit rationale.
- mue: the CMS MUE CSV (practitioner or outpatient hospital services). Preamble lines before
  the heading row are ignored; the heading row is the first whose first cell mentions
  HCPCS or CPT and whose other cells mention MUE. Columns found by heading: code,
  "MUE Values", "MUE Adjudication Indicator" (e.g. "3 Date of Service Edit: Clinical"),
  "MUE Rationale".
- ncd: either the CMS NCD Coding Policy Manual and Change Report (ICD-10-CM) as text, in its
  published layout (see `labintake.codes.ncd_manual`), or a CSV with heading
  `ncd,list,code[,title]`: `list` is `covered`, `not_covered`, `does_not_support` (kept with
  not_covered) or `hcpcs` (the policy's procedure codes); `code` is an ICD-10-CM code, a range
  `E78.00-E78.5` or a prefix `E11.*` (or, for hcpcs rows, a CPT/HCPCS code). The layout is
  told apart by the file's first line (`read_ncd`).
- catalog: the lab's own catalog CSV (columns in `labintake.codes.catalog`).
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date, datetime

from labintake.codes.bundling import MODIFIER_INDICATORS, MueLimit, PtpEdit
from labintake.codes.catalog import CatalogEntry, read_catalog_csv
from labintake.codes.ncd_manual import looks_like_manual, read_manual_text
from labintake.codes.policies import CodeSet, PayerPlan

Progress = Callable[[int], None]

# HCPCS Level II laboratory codes kept besides CPT 80047-89398 when importing PTP/MUE files.
LAB_HCPCS = frozenset(
    {"G0103", "G0306", "G0307", "G0471", "G0480", "G0481", "G0482", "G0483", "G0659"}
)
_PROCEDURE = re.compile(r"^(\d{4}[0-9A-Z]|[A-V]\d{4})$")


def is_lab_code(code: str, extra: Iterable[str] = ()) -> bool:
    """Pathology and laboratory CPT codes (80047-89398) or a listed HCPCS code."""
    if code.isdigit() and len(code) == 5:
        return 80047 <= int(code) <= 89398
    return code in set(extra)


@dataclass(frozen=True, slots=True)
class Rejected:
    line: int
    reason: str


@dataclass
class ImportResult:
    kind: str
    rows_read: int = 0
    skipped: int = 0  # valid but out of scope (non-lab codes)
    rejected: list[Rejected] = field(default_factory=list)
    edits: list[PtpEdit] = field(default_factory=list)
    limits: list[MueLimit] = field(default_factory=list)
    ncd_lists: dict[str, dict[str, list[str]]] = field(default_factory=dict)
    ncd_titles: dict[str, str] = field(default_factory=dict)
    ncd_inverted: set[str] = field(default_factory=set)  # NCDs covering all but their negatives
    entries: list[CatalogEntry] = field(default_factory=list)
    layout: str = ""  # which published layout the file was read as
    edition: str = ""  # the edition the file names (e.g. "October 2025"), when it does
    payers: list[PayerPlan] = field(default_factory=list)

    @property
    def kept(self) -> int:
        return (
            len(self.edits)
            + len(self.limits)
            + len(self.entries)
            + len(self.payers)
            + sum(len(v) for lists in self.ncd_lists.values() for v in lists.values())
        )

    def reasons(self) -> dict[str, int]:
        """Rejection reasons with counts (reason text without the row's particulars)."""
        counts: dict[str, int] = {}
        for item in self.rejected:
            key = item.reason.split(":", 1)[0]
            counts[key] = counts.get(key, 0) + 1
        return counts


def decode_file(data: bytes) -> str:
    """UTF-8 (with or without BOM); CMS files that are not UTF-8 are Windows-1252."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return data.decode("cp1252", errors="replace")


def _cms_date(text: str) -> date | None:
    text = text.strip()
    if text in ("", "*"):
        return None
    return datetime.strptime(text, "%Y%m%d").date()


def read_ptp_text(
    text: str,
    *,
    lab_only: bool = True,
    extra_codes: Iterable[str] = LAB_HCPCS,
    progress: Progress | None = None,
) -> ImportResult:
    result = ImportResult("ncci-ptp", layout="cms-ncci-ptp-text")
    extra = set(extra_codes)
    started = False
    for number, line in enumerate(text.splitlines(), start=1):
        if progress is not None:
            progress(len(line) + 1)
        if not line.strip():
            continue
        fields = [f.strip() for f in line.split("\t")]
        looks_like_row = bool(_PROCEDURE.match(fields[0].upper()))
        if not started:
            if not looks_like_row:
                continue  # title and heading lines
            started = True
        result.rows_read += 1
        if len(fields) < 6:
            result.rejected.append(
                Rejected(number, f"not a PTP row: {len(fields)} tab-separated fields, need 6-7")
            )
            continue
        column1, column2 = fields[0].upper(), fields[1].upper()
        if not looks_like_row or not _PROCEDURE.match(column2):
            result.rejected.append(
                Rejected(number, f"code is not a CPT/HCPCS code: {column1!r} / {column2!r}")
            )
            continue
        modifier = fields[5]
        if modifier not in MODIFIER_INDICATORS:
            result.rejected.append(
                Rejected(number, f"modifier indicator must be 0, 1 or 9: got {modifier!r}")
            )
            continue
        try:
            effective = _cms_date(fields[3])
            deleted = _cms_date(fields[4])
        except ValueError:
            result.rejected.append(
                Rejected(number, f"date is not YYYYMMDD: {fields[3]!r} / {fields[4]!r}")
            )
            continue
        if effective is None:
            result.rejected.append(Rejected(number, "effective date missing: row has none"))
            continue
        if deleted is not None and deleted < effective:
            result.rejected.append(
                Rejected(number, f"deletion before effective date: {deleted} < {effective}")
            )
            continue
        if lab_only and not (is_lab_code(column1, extra) and is_lab_code(column2, extra)):
            result.skipped += 1
            continue
        rationale = fields[6] if len(fields) > 6 else ""
        result.edits.append(PtpEdit(column1, column2, modifier, effective, deleted, rationale))
    if not started:
        result.rejected.append(Rejected(0, "no PTP rows: no line starts with a procedure code"))
    return result


def _find_column(heading: list[str], *words: str) -> int | None:
    for index, cell in enumerate(heading):
        upper = cell.upper()
        if all(word in upper for word in words):
            return index
    return None


def read_mue_csv_cms(
    text: str,
    *,
    lab_only: bool = True,
    extra_codes: Iterable[str] = LAB_HCPCS,
    progress: Progress | None = None,
) -> ImportResult:
    result = ImportResult("mue", layout="cms-mue-csv")
    extra = set(extra_codes)
    rows = csv.reader(io.StringIO(text))
    heading: list[str] | None = None
    columns: tuple[int, int, int, int | None] | None = None
    for row in rows:
        number = rows.line_num
        if progress is not None:
            progress(sum(len(c) + 1 for c in row) + 1)
        if not any(cell.strip() for cell in row):
            continue
        if heading is None:
            first = row[0].upper()
            if ("HCPCS" in first or "CPT" in first) and any("MUE" in c.upper() for c in row[1:]):
                heading = row
                code_col = 0
                units_col = _find_column(row, "MUE", "VALUE")
                mai_col = _find_column(row, "ADJUDICATION") or _find_column(row, "MAI")
                rationale_col = _find_column(row, "RATIONALE")
                if units_col is None or mai_col is None:
                    result.rejected.append(
                        Rejected(number, "heading row lacks 'MUE Values' or adjudication column")
                    )
                    return result
                columns = (code_col, units_col, mai_col, rationale_col)
            continue
        assert columns is not None
        code_col, units_col, mai_col, rationale_col = columns
        result.rows_read += 1
        if len(row) <= max(units_col, mai_col):
            result.rejected.append(Rejected(number, f"too few columns: {len(row)}"))
            continue
        code = row[code_col].strip().upper()
        if not _PROCEDURE.match(code):
            result.rejected.append(Rejected(number, f"code is not a CPT/HCPCS code: {code!r}"))
            continue
        units_text = row[units_col].strip()
        if not units_text.isdigit():
            result.rejected.append(
                Rejected(number, f"MUE value is not a whole number: {units_text!r}")
            )
            continue
        mai_text = row[mai_col].strip()
        if mai_text[:1] not in ("1", "2", "3"):
            result.rejected.append(
                Rejected(number, f"adjudication indicator not 1-3: {mai_text!r}")
            )
            continue
        if lab_only and not is_lab_code(code, extra):
            result.skipped += 1
            continue
        rationale = (
            row[rationale_col].strip()
            if rationale_col is not None and rationale_col < len(row)
            else ""
        )
        result.limits.append(MueLimit(code, int(units_text), int(mai_text[0]), rationale))
    if heading is None:
        result.rejected.append(
            Rejected(0, "no heading row: no line with HCPCS/CPT and MUE columns")
        )
    seen: dict[str, int] = {}
    unique: list[MueLimit] = []
    for limit in result.limits:
        if limit.cpt in seen:
            result.rejected.append(Rejected(0, f"code listed twice: {limit.cpt} (first kept)"))
            continue
        seen[limit.cpt] = 1
        unique.append(limit)
    result.limits = unique
    return result


NCD_LISTS = {
    "covered": "covered",
    "not_covered": "not_covered",
    "does_not_support": "not_covered",
    "hcpcs": "hcpcs",
}
_NCD_NUMBER = re.compile(r"^\d{3}\.\d{1,2}$")


NCD_CSV_LAYOUT = "ncd-csv"
NCD_MANUAL_LAYOUT = "cms-ncd-coding-policy-manual"


def read_ncd(text: str, *, progress: Progress | None = None) -> ImportResult:
    """An NCD code-list file in either layout: the simple CSV (first line a heading naming
    `ncd`, `list` and `code`) or the CMS coding policy manual text."""
    first = next((line for line in text.splitlines() if line.strip()), "")
    heading = {cell.strip().lower() for cell in first.split(",")}
    if {"ncd", "list", "code"} <= heading:
        return read_ncd_csv(text, progress=progress)
    if looks_like_manual(text):
        return read_ncd_manual(text, progress=progress)
    result = ImportResult("ncd")
    result.rejected.append(
        Rejected(
            1,
            "unknown NCD file layout: neither a CSV with heading ncd,list,code nor the text of "
            "the CMS NCD Coding Policy Manual (190.xx sections with code tables)",
        )
    )
    return result


def read_ncd_manual(text: str, *, progress: Progress | None = None) -> ImportResult:
    result = ImportResult("ncd", layout=NCD_MANUAL_LAYOUT)
    manual = read_manual_text(text)
    if progress is not None:
        progress(len(text))
    result.rows_read = manual.rows_read
    result.skipped = manual.global_codes
    result.rejected = [Rejected(p.line, p.reason) for p in manual.problems]
    result.ncd_lists = manual.lists
    result.ncd_titles = manual.titles
    result.ncd_inverted = manual.inverted
    result.edition = manual.edition
    return result


def read_ncd_csv(text: str, *, progress: Progress | None = None) -> ImportResult:
    result = ImportResult("ncd", layout=NCD_CSV_LAYOUT)
    reader = csv.DictReader(io.StringIO(text))
    heading = [h.strip().lower() for h in reader.fieldnames or []]
    missing = [c for c in ("ncd", "list", "code") if c not in heading]
    if missing:
        result.rejected.append(Rejected(1, f"heading lacks column(s): {', '.join(missing)}"))
        return result
    reader.fieldnames = heading
    for row in reader:
        number = reader.line_num
        if progress is not None:
            progress(sum(len(v or "") + 1 for v in row.values()))
        result.rows_read += 1
        ncd = (row.get("ncd") or "").strip()
        kind = (row.get("list") or "").strip().lower()
        code = (row.get("code") or "").strip().upper()
        if not _NCD_NUMBER.match(ncd):
            result.rejected.append(Rejected(number, f"NCD number not like 190.23: {ncd!r}"))
            continue
        if kind not in NCD_LISTS:
            result.rejected.append(
                Rejected(
                    number,
                    f"list must be covered, not_covered, does_not_support or hcpcs: {kind!r}",
                )
            )
            continue
        if NCD_LISTS[kind] == "hcpcs":
            if not _PROCEDURE.match(code):
                result.rejected.append(Rejected(number, f"code is not a CPT/HCPCS code: {code!r}"))
                continue
        else:
            try:
                CodeSet.parse([code])
            except ValueError as exc:
                result.rejected.append(
                    Rejected(number, f"not an ICD-10-CM code, range or prefix: {exc}")
                )
                continue
        lists = result.ncd_lists.setdefault(ncd, {"covered": [], "not_covered": [], "hcpcs": []})
        lists[NCD_LISTS[kind]].append(code)
        title = (row.get("title") or "").strip()
        if title:
            result.ncd_titles.setdefault(ncd, title)
    return result


def read_catalog(text: str, *, progress: Progress | None = None) -> ImportResult:
    result = ImportResult("catalog", layout="labintake-catalog-csv")
    parsed = read_catalog_csv(text)
    if progress is not None:
        progress(len(text))
    result.rows_read = parsed.rows_read
    result.entries = parsed.entries
    result.rejected = [Rejected(p.line, p.reason) for p in parsed.problems]
    return result
