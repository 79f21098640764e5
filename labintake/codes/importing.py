"""`labintake codes import KIND FILE`: read an official file and write a new table version.

- ncci-ptp -> a new `bundling` version: the imported PTP edits, with MUE limits and panels
  carried over from the bundling version in force on the effective date;
- mue -> a new `bundling` version: the imported MUE limits, PTP edits and panels carried over;
- ncd -> a new `coverage` version: the policy files carried over, the imported NCDs' code
  lists in `ncd_codes.csv` (other NCDs keep theirs); an NCD with no policy file yet gets a
  minimal one (title, procedure codes, no frequency limits);
- catalog -> a new `catalog` version holding the imported rows;
- icd10cm -> a new `icd10cm` release compiled from the CMS order file (with its addenda and
  tabular XML), see `labintake.codes.icd10_import`: a whole release, nothing carried over.
- payers -> a new `coverage` version: the lab's payer table (CSV, see
  `labintake.codes.payer_table`) as its `payers.toml`, the policies carried over.

The new version is in force from `effective_from` (default: the first day of the quarter the
file names as its edition, e.g. the NCD manual's "October 2025 Changes", else today) and
supersedes older ones for dates of service from then on. Nothing is written when no row is
kept, or, with `strict`, when any row was rejected.

Every import kind stamps the new version's manifest the same way (`ImportStamp`): the file's
name and SHA-256, when, by which command and user, the layout it was read as, the edition it
names, and the rows read, kept, skipped and rejected.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

from labintake.codes.bundling import format_mue_csv, format_ptp_tsv
from labintake.codes.catalog import format_catalog_csv
from labintake.codes.coverage import NCD_CODES_CSV, format_ncd_codes_csv, read_ncd_codes_csv
from labintake.codes.importers import (
    ImportResult,
    Progress,
    decode_file,
    read_catalog,
    read_mue_csv_cms,
    read_ncd,
    read_ptp_text,
)
from labintake.codes.manifest import ImportStamp, TableVersion, discover
from labintake.codes.payer_table import format_payers_toml, read_payers_csv
from labintake.codes.versions import create_version
from labintake.errors import CodeTableError

IMPORT_KINDS = {
    "ncci-ptp": "bundling",
    "mue": "bundling",
    "ncd": "coverage",
    "catalog": "catalog",
    "payers": "coverage",
}
_MONTHS = {"January": 1, "April": 4, "July": 7, "October": 10}


def edition_start(edition: str) -> date | None:
    """ "October 2025" -> 2025-10-01 (the quarter a CMS quarterly file takes effect)."""
    month, _, year = edition.partition(" ")
    if month in _MONTHS and year.isdigit():
        return date(int(year), _MONTHS[month], 1)
    return None


def import_stamp(
    path: Path, data: bytes, result: ImportResult, invoked_by: str, at: datetime | None = None
) -> ImportStamp:
    """The provenance written into the manifest of a version made from `path`."""
    return ImportStamp(
        file=path.name,
        sha256="sha256:" + hashlib.sha256(data).hexdigest(),
        at=(at or datetime.now(UTC)).replace(microsecond=0),
        by=invoked_by or f"labintake codes import {result.kind} {path.name}",
        layout=result.layout,
        edition=result.edition,
        rows_read=result.rows_read,
        rows_kept=result.kept,
        rows_skipped=result.skipped,
        rows_rejected=len(result.rejected),
    )


@dataclass
class ImportOutcome:
    result: ImportResult
    written: TableVersion | None
    based_on: TableVersion | None
    reason_not_written: str = ""


def _base_version(directory: Path, kind: str, on: date) -> TableVersion | None:
    candidates = [m for m in discover(directory) if m.kind == kind and m.covers(on)]
    if not candidates:
        candidates = [m for m in discover(directory) if m.kind == kind]
    return max(candidates, key=lambda m: (m.effective_from, m.version), default=None)


def _free_version_name(directory: Path, kind: str, wanted: str) -> str:
    taken = {m.version for m in discover(directory)} if directory.is_dir() else set()
    name, n = wanted, 2
    while name in taken or (directory / kind / name).exists():
        name, n = f"{wanted}-{n}", n + 1
    return name


def _minimal_ncd_toml(
    ncd: str, title: str, cpts: list[str], source: str, inverted: bool = False
) -> bytes:
    lines = [
        f"ncd = {json.dumps(ncd)}",
        f"title = {json.dumps(title or f'NCD {ncd}')}",
        'kind = "NCD"',
        "illustrative = false",
        f"source = {json.dumps(source)}",
        f"cpts = [{', '.join(json.dumps(c) for c in cpts)}]",
        f"inverted = {'true' if inverted else 'false'}",
        "# covered / not_covered come from ncd_codes.csv",
    ]
    return ("\n".join(lines) + "\n").encode("utf-8")


def import_file(
    kind: str,
    path: Path,
    directory: Path,
    *,
    effective_from: date | None = None,
    effective_to: date | None = None,
    version: str | None = None,
    lab_only: bool = True,
    strict: bool = False,
    progress: Progress | None = None,
    invoked_by: str = "",
) -> ImportOutcome:
    if kind not in IMPORT_KINDS:
        raise CodeTableError(f"unknown import kind {kind!r}; one of {', '.join(IMPORT_KINDS)}")
    table_kind = IMPORT_KINDS[kind]
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise CodeTableError(f"{path}: cannot read: {exc}") from exc
    text = decode_file(data)
    if kind == "ncci-ptp":
        result = read_ptp_text(text, lab_only=lab_only, progress=progress)
    elif kind == "mue":
        result = read_mue_csv_cms(text, lab_only=lab_only, progress=progress)
    elif kind == "ncd":
        result = read_ncd(text, progress=progress)
    elif kind == "payers":
        result = read_payers_csv(text, progress=progress)
    else:
        result = read_catalog(text, progress=progress)
    on = effective_from or edition_start(result.edition) or date.today()
    base = _base_version(directory, table_kind, on)
    if result.kept == 0:
        return ImportOutcome(result, None, base, "no row was kept")
    if strict and result.rejected:
        return ImportOutcome(
            result, None, base, f"{len(result.rejected)} row(s) rejected (--strict)"
        )
    if table_kind == "bundling" and base is None:
        raise CodeTableError("no bundling table version to carry panels/MUE/PTP over from")
    if table_kind == "coverage" and base is None:
        raise CodeTableError("no coverage table version to carry policies over from")

    files: dict[str, bytes] = {}
    source = f"{kind} import of {path.name}"
    if kind == "ncci-ptp":
        files["ptp.tsv"] = format_ptp_tsv(result.edits).encode("utf-8")
        source = f"CMS NCCI PTP edits from {path.name} (laboratory codes)"
    elif kind == "mue":
        files["mue.csv"] = format_mue_csv(result.limits).encode("utf-8")
        source = f"CMS MUE values from {path.name} (laboratory codes)"
    elif kind == "ncd":
        assert base is not None
        assert base.folder is not None
        lists: dict[str, dict[str, list[str]]] = {}
        if NCD_CODES_CSV in base.files:
            lists = read_ncd_codes_csv(
                (base.folder / NCD_CODES_CSV).read_text(encoding="utf-8"), NCD_CODES_CSV
            )
        lists.update(result.ncd_lists)
        files[NCD_CODES_CSV] = format_ncd_codes_csv(lists).encode("utf-8")
        existing = set(base.files)
        for ncd, ncd_lists in result.ncd_lists.items():
            name = f"ncd-{ncd}.toml"
            if name not in existing:
                files[name] = _minimal_ncd_toml(
                    ncd,
                    result.ncd_titles.get(ncd, ""),
                    ncd_lists["hcpcs"],
                    source,
                    inverted=ncd in result.ncd_inverted,
                )
        edition = f" ({result.edition} edition)" if result.edition else ""
        source = f"NCD code lists from {path.name}{edition}"
    elif kind == "payers":
        files["payers.toml"] = format_payers_toml(result.payers).encode("utf-8")
        source = f"payer table {path.name}"
    else:
        files["catalog.csv"] = format_catalog_csv(result.entries).encode("utf-8")
        source = f"lab catalog {path.name}"
    if base is not None and kind != "catalog":
        source += f" (rest carried over from {base.version})"
    wanted = version or f"{table_kind}-{on.isoformat()}"
    name = _free_version_name(directory, table_kind, wanted) if version is None else wanted
    manifest = TableVersion(
        kind=table_kind,
        version=name,
        source=source,
        effective_from=on,
        effective_to=effective_to,
        rows=0,
        checksum="",
        illustrative=bool(base and base.illustrative and kind != "catalog"),
        created=date.today(),
        notes=f"{result.rows_read} rows read, {result.kept} kept, {result.skipped} skipped, "
        f"{len(result.rejected)} rejected",
        imported=import_stamp(path, data, result, invoked_by),
    )
    written = create_version(
        directory, manifest, files, copy_from=base if kind != "catalog" else None
    )
    return ImportOutcome(result, written, base)
