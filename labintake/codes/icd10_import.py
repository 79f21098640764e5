"""`labintake codes import icd10cm`: compile an ICD-10-CM release from the CMS/NCHS files as
published, in the same table format as the shipped releases (see `labintake.codes.icd10`).

Files read:

- the order file, `icd10cm_order_YYYY.txt` (FY2026 on: `icd10cm-order-YYYY.txt`), required. Fixed
  width, one code per line: order number (5, zero filled), blank, code without its dot (7, left
  aligned), blank, `1` complete (valid for HIPAA transactions) or `0` header, blank, short
  title (60, padded), blank, long title. It holds every code of the tabular list, headers
  included, and the 7th-character codes written out; chapters and blocks are not in it.
- the order addenda, `icd10cm_order_addenda_YYYY.txt`, optional, any number: the changes since
  the previous release, one per line, an action label (`Add:`, `Delete:`, `Revise from:`,
  `Revise to:`, padded with blanks) followed by an order-file record. The order file already
  holds the result, so each addendum is checked against it (an added or revised code must be
  there as the addendum says, a deleted one must be gone): a mismatch means the files are not
  from the same release and nothing is written. The counts go into the manifest's notes.
- the tabular XML, `icd10cm_tabular_YYYY.xml`, optional: Excludes1 notes of each code
  (`<diag><excludes1><note>`) reduced to code patterns as for the shipped releases, and the
  7th-character rules (`<sevenChrDef>`, with its `<sevenChrNote>`), inherited down the tree:
  every code below a definition takes a 7th character. Streamed with `iterparse` through
  defusedxml (no entity expansion, no external references). Chapter- and block-level notes are
  left out, as in the shipped releases.

Without the tabular XML the `7` flag comes from the order file alone (a 7-character code and
the code it extends) and no Excludes1 patterns are recorded.

Windows: `--effective-from` is required (the file name says the fiscal year, not whether it is
the October release or the April update) and must fall in the fiscal year the file name gives;
`--effective-to` defaults to September 30 ending that fiscal year (October 1 release: the next
September 30; April 1 update: the same year's). A bad line stops the import with its line number:
a release is all or nothing.
"""

from __future__ import annotations

import gzip
import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime
from itertools import count
from pathlib import Path
from xml.etree.ElementTree import Element, ParseError

from defusedxml.ElementTree import iterparse

from labintake.codes.build_icd10 import excludes_patterns
from labintake.codes.icd10 import Icd10Entry, format_rows, is_manifestation_title
from labintake.codes.importers import decode_file
from labintake.codes.manifest import ImportStamp, TableVersion, discover
from labintake.codes.release_choice import default_effective_to, fiscal_year
from labintake.codes.tables import ICD10_FILE
from labintake.codes.versions import create_version
from labintake.errors import CodeTableError

_FILE_YEAR = re.compile(r"icd10cm[_-](?:order|tabular)[_-](?:addenda[_-])?(\d{4})", re.IGNORECASE)
_BARE_CODE = re.compile(r"^[A-Z][0-9][0-9A-Z][0-9A-Z]{0,4}$")
_ACTION = re.compile(r"^(Add|Delete|Revise from|Revise to)\s*:?\s+(?=\d{5} )", re.IGNORECASE)
_SCOPES = ("chapter", "section", "diag")
SHORT_WIDTH = 60
LONG_START = 77  # 5 + 1 + 7 + 1 + 1 + 1 + 60 + 1


@dataclass(frozen=True, slots=True)
class OrderRecord:
    line: int
    order: int
    bare: str  # without its dot, as in the file
    billable: bool
    short: str
    long: str

    @property
    def code(self) -> str:
        return dotted(self.bare)


def dotted(bare: str) -> str:
    return f"{bare[:3]}.{bare[3:]}" if len(bare) > 3 else bare


def parse_record(text: str, where: str) -> OrderRecord:
    """One order-file record (`where` names file and line for the error)."""
    line = text.rstrip("\r\n").rstrip()
    if len(line) <= LONG_START:
        raise CodeTableError(
            f"{where}: too short for the order-file layout ({len(line)} characters; the long "
            f"title starts at column {LONG_START + 1})"
        )
    number, code, flag = line[0:5], line[6:13].rstrip(), line[14]
    if not number.isdigit():
        raise CodeTableError(f"{where}: columns 1-5 must be the zero-filled order number")
    if line[5] != " " or line[13] != " " or line[15] != " " or line[76] != " ":
        raise CodeTableError(
            f"{where}: blanks expected in columns 6, 14, 16 and 77 (fixed-width order file)"
        )
    if not _BARE_CODE.match(code) or " " in line[6:13].rstrip():
        raise CodeTableError(f"{where}: {line[6:13]!r} (columns 7-13) is not an ICD-10-CM code")
    if flag not in "01":
        raise CodeTableError(f"{where}: column 15 must be 1 (complete) or 0 (header), not {flag!r}")
    short, long = line[16 : 16 + SHORT_WIDTH].strip(), line[LONG_START:].strip()
    if not short or not long:
        raise CodeTableError(f"{where}: {code} has an empty title")
    return OrderRecord(0, int(number), code, flag == "1", short, long)


def read_order_file(text: str, name: str) -> list[OrderRecord]:
    records: list[OrderRecord] = []
    seen: dict[str, int] = {}
    last = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        where = f"{name} line {number}"
        record = parse_record(raw, where)
        if record.order <= last:
            raise CodeTableError(
                f"{where}: order number {record.order:05d} does not follow {last:05d}"
            )
        if record.bare in seen:
            raise CodeTableError(f"{where}: {record.code} repeats line {seen[record.bare]}")
        last = record.order
        seen[record.bare] = number
        records.append(replace(record, line=number))
    if not records:
        raise CodeTableError(f"{name}: no order-file records")
    return records


@dataclass
class AddendaSummary:
    added: int = 0
    deleted: int = 0
    revised: int = 0


def check_addenda(
    text: str, name: str, by_code: dict[str, OrderRecord], summary: AddendaSummary
) -> None:
    """Every change the addenda list must show in the order file (else the files differ)."""
    pending_from: int | None = None
    for number, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        where = f"{name} line {number}"
        match = _ACTION.match(raw.strip())
        if match is None:
            raise CodeTableError(
                f"{where}: expected 'Add:', 'Delete:', 'Revise from:' or 'Revise to:' followed "
                "by an order-file record"
            )
        action = match.group(1).lower()
        record = parse_record(raw.strip()[match.end() :], where)
        current = by_code.get(record.bare)
        if action == "delete":
            if current is not None:
                raise CodeTableError(
                    f"{where}: deletes {record.code}, but the order file still has it "
                    f"(line {current.line}): the files are not from the same release"
                )
            summary.deleted += 1
            continue
        if action == "revise from":
            pending_from = number
            continue
        if action == "revise to":
            if pending_from is None:
                raise CodeTableError(f"{where}: 'Revise to' without a 'Revise from' before it")
            pending_from = None
            summary.revised += 1
        else:
            summary.added += 1
        if current is None:
            raise CodeTableError(
                f"{where}: {record.code} is not in the order file: the files are not from the "
                "same release"
            )
        if current.billable != record.billable or _words(current.long) != _words(record.long):
            raise CodeTableError(
                f"{where}: {record.code} reads {'1' if record.billable else '0'} "
                f"{record.long!r} here but {'1' if current.billable else '0'} {current.long!r} "
                f"in the order file (line {current.line}): the files are not from the same release"
            )
    if pending_from is not None:
        raise CodeTableError(f"{name} line {pending_from}: 'Revise from' without its 'Revise to'")


def _words(text: str) -> str:
    return " ".join(text.split()).casefold()


@dataclass
class TabularNotes:
    excludes1: dict[str, list[str]] = field(default_factory=dict)  # dotted code -> notes
    seventh: set[str] = field(default_factory=set)  # codes taking a 7th character
    codes: list[str] = field(default_factory=list)  # every <diag><name>, in file order


def read_tabular(path: Path) -> TabularNotes:
    """Stream the tabular XML: Excludes1 notes per code and the 7th-character rules, inherited
    by every code below the element (chapter, section or code) that defines them."""
    notes = TabularNotes()
    ids = count(1)
    frames: list[tuple[int, list[str]]] = []  # open chapter/section/diag: (id, [its code])
    defines_seventh: set[int] = set()  # frame ids holding a <sevenChrDef>
    frames_of: dict[str, tuple[int, ...]] = {}  # code -> ids of its frame and the enclosing ones
    tags: list[str] = []
    try:
        with path.open("rb") as stream:
            for event, element in iterparse(stream, events=("start", "end")):
                tag = element.tag
                if event == "start":
                    tags.append(tag)
                    if tag in _SCOPES:
                        frames.append((next(ids), []))
                    continue
                tags.pop()
                parent_tag = tags[-1] if tags else ""
                if tag == "name" and parent_tag == "diag" and frames:
                    code = (element.text or "").strip().upper()
                    if not code:
                        raise CodeTableError(f"{path.name}: a <diag> with an empty <name>")
                    frames[-1][1].append(code)
                    frames_of[code] = tuple(frame_id for frame_id, _ in frames)
                    notes.codes.append(code)
                elif tag == "note" and parent_tag == "excludes1" and tags[-2:-1] == ["diag"]:
                    if frames and frames[-1][1]:
                        text = " ".join("".join(element.itertext()).split())
                        notes.excludes1.setdefault(frames[-1][1][0], []).append(text)
                elif tag == "sevenChrDef" and frames:
                    defines_seventh.add(frames[-1][0])
                elif tag in _SCOPES:
                    frames.pop()
                    _release(element)
    except ParseError as exc:
        line, column = getattr(exc, "position", (0, 0))
        raise CodeTableError(f"{path.name} line {line}, column {column}: {exc}") from exc
    except OSError as exc:
        raise CodeTableError(f"{path}: cannot read: {exc}") from exc
    if not notes.codes:
        raise CodeTableError(f"{path.name}: no <diag> codes: not an ICD-10-CM tabular file")
    notes.seventh = {
        code for code, chain in frames_of.items() if any(i in defines_seventh for i in chain)
    }
    return notes


def _release(element: Element) -> None:
    """Keep memory flat while streaming: an element's children are not needed once it ends."""
    for child in list(element):
        element.remove(child)


def compile_entries(
    records: Sequence[OrderRecord], tabular: TabularNotes | None, name: str
) -> list[Icd10Entry]:
    """The rows of the release: parent, flags and Excludes1 patterns for every code."""
    bare_codes = {r.bare for r in records}
    parents: dict[str, str] = {}  # bare code -> bare parent (categories have none)
    for record in records:
        for n in range(len(record.bare) - 1, 2, -1):  # X placeholders: S0000XA -> S0000
            if record.bare[:n] in bare_codes:
                parents[record.bare] = record.bare[:n]
                break
    has_children = set(parents.values())
    seventh = {r.bare for r in records if len(r.bare) == 7}
    seventh |= {parents[b] for b in seventh if b in parents}
    excludes: dict[str, tuple[str, ...]] = {}
    if tabular is not None:
        dotted_codes = {dotted(b) for b in bare_codes}
        missing = [c for c in tabular.codes if c not in dotted_codes]
        if missing:
            shown = ", ".join(missing[:5])
            raise CodeTableError(
                f"the tabular XML has {len(missing)} code(s) the order file {name} lacks "
                f"({shown}): the files are not from the same release"
            )
        is_header = {dotted(b): b in has_children for b in bare_codes}
        for code, texts in tabular.excludes1.items():
            excludes[code] = excludes_patterns(texts, is_header)
        seventh |= {c.replace(".", "") for c in tabular.seventh}
    return [
        Icd10Entry(
            code=r.code,
            description=r.long,
            billable=r.billable,
            header=r.bare in has_children,
            seventh_char_required=r.bare in seventh,
            excludes1=excludes.get(r.code, ()),
            parent=dotted(parents[r.bare]) if r.bare in parents else None,
            manifestation=is_manifestation_title(r.long),  # flag M (guideline I.A.13)
        )
        for r in records
    ]


def file_year(path: Path) -> int | None:
    """The fiscal year in a CMS file name (`icd10cm_order_2027.txt` -> 2027), if any."""
    match = _FILE_YEAR.search(path.name)
    return int(match.group(1)) if match else None


def stamp(path: Path, data: bytes) -> str:
    return f"{path.name} sha256:{hashlib.sha256(data).hexdigest()}"


@dataclass
class Icd10Import:
    written: TableVersion
    codes: int
    billable: int
    addenda: AddendaSummary
    excludes1_codes: int
    seventh_codes: int


def _window(order_path: Path, effective_from: date, effective_to: date | None) -> date:
    year = file_year(order_path)
    if year is not None and fiscal_year(effective_from) != year:
        raise CodeTableError(
            f"{order_path.name} is the FY{year} release (in force from {year - 1}-10-01 to "
            f"{year}-09-30), but --effective-from is {effective_from} (FY"
            f"{fiscal_year(effective_from)}): use the order file of that fiscal year"
        )
    end = effective_to or default_effective_to(effective_from)
    if end is None:
        raise CodeTableError(
            f"--effective-from {effective_from} is neither an October 1 release nor an April 1 "
            "update: give --effective-to as well"
        )
    if end < effective_from:
        raise CodeTableError("--effective-to is before --effective-from")
    return end


def import_icd10cm(
    order_path: Path,
    directory: Path,
    *,
    effective_from: date | None,
    effective_to: date | None = None,
    version: str | None = None,
    addenda: Iterable[Path] = (),
    tabular: Path | None = None,
    invoked_by: str = "",
) -> Icd10Import:
    """Read the official files, compile the release and write `icd10cm/<version>/`, stamped
    like every import (file, SHA-256, when, by which command, rows)."""
    if effective_from is None:
        raise CodeTableError(
            "icd10cm needs --effective-from: 10-01 for the October release, 04-01 for the "
            "April update (the file name gives only the fiscal year)"
        )
    end = _window(order_path, effective_from, effective_to)
    stamps: list[str] = []
    try:
        raw = order_path.read_bytes()
    except OSError as exc:
        raise CodeTableError(f"{order_path}: cannot read: {exc}") from exc
    stamps.append(stamp(order_path, raw))
    records = read_order_file(decode_file(raw), order_path.name)
    by_code = {r.bare: r for r in records}
    summary = AddendaSummary()
    for path in addenda:
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise CodeTableError(f"{path}: cannot read: {exc}") from exc
        stamps.append(stamp(path, data))
        check_addenda(decode_file(data), path.name, by_code, summary)
    notes: TabularNotes | None = None
    if tabular is not None:
        try:
            stamps.append(stamp(tabular, tabular.read_bytes()))
        except OSError as exc:
            raise CodeTableError(f"{tabular}: cannot read: {exc}") from exc
        notes = read_tabular(tabular)
    entries = compile_entries(records, notes, order_path.name)
    text = format_rows(entries)
    name = version or f"icd10cm-{effective_from:%Y-%m}"
    taken = {m.version for m in discover(directory)} if directory.is_dir() else set()
    if name in taken:
        raise CodeTableError(f"table version {name} already exists; give another with --version")
    fy = fiscal_year(effective_from)
    kind = "October release" if effective_from.month == 10 else "update"
    used = ", ".join(s.split(" ")[0] for s in stamps)
    manifest = TableVersion(
        kind="icd10cm",
        version=name,
        source=f"CMS/NCHS ICD-10-CM FY{fy} {kind} (public domain), read from {used}; "
        "compiled by labintake codes import icd10cm",
        effective_from=effective_from,
        effective_to=end,
        rows=0,
        checksum="",
        illustrative=False,
        created=date.today(),
        notes=f"{len(records)} codes ({sum(r.billable for r in records)} complete); addenda "
        f"checked: {summary.added} added, {summary.deleted} deleted, {summary.revised} revised; "
        + (
            "Excludes1 and 7th-character rules from the tabular XML"
            if notes
            else "no tabular XML: no Excludes1 patterns, 7th characters from the order file only"
        ),
        release_date=effective_from,
        covers_text=f"FY{fy}: dates of service {effective_from} to {end}",
        source_files=tuple(stamps),
        imported=ImportStamp(
            file=order_path.name,
            sha256=stamps[0].split(" ", 1)[1],
            at=datetime.now(UTC).replace(microsecond=0),
            by=invoked_by or "labintake codes import icd10cm",
            layout="cms-icd10cm-order-file",
            edition=f"FY{fy} {kind}",
            rows_read=len(records),
            rows_kept=len(entries),
        ),
    )
    written = create_version(
        directory, manifest, {ICD10_FILE: gzip.compress(text.encode("utf-8"), 9, mtime=0)}
    )
    return Icd10Import(
        written=written,
        codes=len(entries),
        billable=sum(e.billable for e in entries),
        addenda=summary,
        excludes1_codes=sum(1 for e in entries if e.excludes1),
        seventh_codes=sum(1 for e in entries if e.seventh_char_required),
    )
