"""Table-version manifests: what a `code_tables/<kind>/<version>/` folder holds and vouches for.

`manifest.toml`:

    kind = "icd10cm"                     # icd10cm | catalog | coverage | bundling | dxedits
    version = "icd10cm-2026-04"          # unique id, recorded with every verification
    source = "..."                       # where the data came from
    effective_from = 2026-04-01          # first date of service it applies to
    effective_to = 2026-09-30            # last date of service (omit: until superseded)
    rows = 98516
    files = ["icd10cm.tsv.gz"]           # the data files, in checksum order
    checksum = "sha256:..."              # see `compute_checksum`
    illustrative = false                 # true: a small subset, not the official full table
    created = 2026-11-28
    notes = "..."
    # icd10cm only (all optional):
    release_date = 2026-04-01            # when CMS made this content effective (default:
                                         # effective_from); before it the window is an
                                         # approximation, and a release whose content was
                                         # effective on the date of service wins over it
    covers = "..."                       # the window in words (which fiscal year it stands for)
    approximation = "..."                # what is approximate about the window, if anything
    source_files = ["icd10cm-order-2026.txt sha256:..."]  # the official files it was read from
    # written by `labintake codes import KIND FILE` (the provenance of an imported version):
    imported_file = "ncd-manual-2026q4.txt"          # the file read (name only)
    imported_sha256 = "sha256:..."                   # SHA-256 of its bytes
    imported_at = 2026-12-07T01:02:03Z               # when (UTC)
    imported_by = "labintake codes import ncd ... (user)"   # what command, which user
    imported_layout = "cms-ncd-coding-policy-manual" # the published layout it was read as
    imported_edition = "October 2025"                # the edition the file names, if any
    imported_rows = [10, 8, 0, 2]                    # read, kept, skipped, rejected

The checksum is SHA-256 over, for each listed file in order, its name, a NUL byte, its length
in decimal, a NUL byte and its bytes. Editing a data file by hand means sealing the folder
again (`labintake codes seal FOLDER`), which recomputes rows and checksum.
"""

from __future__ import annotations

import hashlib
import json
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

from labintake.errors import CodeTableError

MANIFEST = "manifest.toml"
KINDS = ("icd10cm", "catalog", "coverage", "bundling", "dxedits")


@dataclass(frozen=True)
class ImportStamp:
    """Where an imported table version came from (see the `imported_*` manifest keys)."""

    file: str
    sha256: str
    at: datetime
    by: str
    layout: str = ""
    edition: str = ""
    rows_read: int = 0
    rows_kept: int = 0
    rows_skipped: int = 0
    rows_rejected: int = 0

    def fields(self) -> list[tuple[str, object]]:
        items: list[tuple[str, object]] = [
            ("imported_file", self.file),
            ("imported_sha256", self.sha256),
            ("imported_at", self.at),
            ("imported_by", self.by),
        ]
        if self.layout:
            items.append(("imported_layout", self.layout))
        if self.edition:
            items.append(("imported_edition", self.edition))
        rows = [self.rows_read, self.rows_kept, self.rows_skipped, self.rows_rejected]
        return [*items, ("imported_rows", rows)]

    @classmethod
    def from_manifest(cls, data: dict[str, Any]) -> ImportStamp | None:
        if "imported_file" not in data:
            return None
        at = data["imported_at"]
        if not isinstance(at, datetime):
            raise TypeError("imported_at must be a date-time like 2026-12-07T01:02:03Z")
        rows = [int(n) for n in data.get("imported_rows", [0, 0, 0, 0])]
        if len(rows) != 4:
            raise ValueError("imported_rows must be [read, kept, skipped, rejected]")
        return cls(
            file=str(data["imported_file"]),
            sha256=str(data["imported_sha256"]),
            at=at,
            by=str(data["imported_by"]),
            layout=str(data.get("imported_layout", "")),
            edition=str(data.get("imported_edition", "")),
            rows_read=rows[0],
            rows_kept=rows[1],
            rows_skipped=rows[2],
            rows_rejected=rows[3],
        )


@dataclass(frozen=True)
class TableVersion:
    kind: str
    version: str
    source: str
    effective_from: date
    effective_to: date | None
    rows: int
    checksum: str
    illustrative: bool
    files: tuple[str, ...] = ()
    created: date | None = None
    notes: str = ""
    folder: Path | None = field(default=None, compare=False)
    release_date: date | None = None
    covers_text: str = ""
    approximation: str = ""
    source_files: tuple[str, ...] = ()

    @property
    def content_date(self) -> date:
        """When the content took effect officially (`release_date`, else `effective_from`)."""
        return self.release_date or self.effective_from

    imported: ImportStamp | None = None

    def covers(self, dos: date) -> bool:
        return self.effective_from <= dos and (
            self.effective_to is None or dos <= self.effective_to
        )


def compute_checksum(folder: Path, files: Sequence[str]) -> str:
    digest = hashlib.sha256()
    for name in files:
        try:
            data = (folder / name).read_bytes()
        except OSError as exc:
            raise CodeTableError(f"{folder}: listed file {name} cannot be read: {exc}") from exc
        digest.update(name.encode("utf-8") + b"\0" + str(len(data)).encode("ascii") + b"\0")
        digest.update(data)
    return "sha256:" + digest.hexdigest()


def read_manifest(folder: Path) -> TableVersion:
    path = folder / MANIFEST
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise CodeTableError(f"{path}: unreadable manifest: {exc}") from exc
    try:
        kind = str(data["kind"])
        effective_from = data["effective_from"]
        effective_to = data.get("effective_to")
        created = data.get("created")
        release_date = data.get("release_date")
        files = tuple(str(f) for f in data["files"])
        manifest = TableVersion(
            kind=kind,
            version=str(data["version"]),
            source=str(data["source"]),
            effective_from=effective_from,
            effective_to=effective_to,
            rows=int(data["rows"]),
            checksum=str(data["checksum"]),
            illustrative=bool(data.get("illustrative", False)),
            files=files,
            created=created,
            notes=str(data.get("notes", "")),
            folder=folder,
            release_date=release_date,
            covers_text=str(data.get("covers", "")),
            approximation=str(data.get("approximation", "")),
            source_files=tuple(str(f) for f in data.get("source_files", ())),
            imported=ImportStamp.from_manifest(data),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise CodeTableError(f"{path}: missing or malformed key {exc}") from exc
    if kind not in KINDS:
        raise CodeTableError(f"{path}: kind {kind!r} is not one of {', '.join(KINDS)}")
    for name, value in (
        ("effective_from", effective_from),
        ("effective_to", effective_to),
        ("release_date", release_date),
    ):
        if value is not None and not isinstance(value, date):
            raise CodeTableError(f"{path}: {name} must be a date like 2026-04-01")
    if effective_to is not None and effective_to < effective_from:
        raise CodeTableError(f"{path}: effective_to is before effective_from")
    if not files:
        raise CodeTableError(f"{path}: lists no data files")
    return manifest


def verify_checksum(manifest: TableVersion) -> None:
    """Raise CodeTableError when the folder's files are not the ones the manifest vouches for."""
    assert manifest.folder is not None
    actual = compute_checksum(manifest.folder, manifest.files)
    if actual != manifest.checksum:
        raise CodeTableError(
            f"{manifest.kind} table {manifest.version}: checksum mismatch "
            f"(manifest {manifest.checksum[:19]}..., files {actual[:19]}...). The data was "
            f"changed after it was sealed; restore it or re-seal with `labintake codes seal`."
        )


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return json.dumps(str(value), ensure_ascii=False)


def write_manifest(folder: Path, manifest: TableVersion) -> TableVersion:
    """Write `manifest.toml`, computing checksum from the files (rows as given)."""
    checksum = compute_checksum(folder, manifest.files)
    fields: list[tuple[str, object]] = [
        ("kind", manifest.kind),
        ("version", manifest.version),
        ("source", manifest.source),
        ("effective_from", manifest.effective_from),
    ]
    if manifest.effective_to is not None:
        fields.append(("effective_to", manifest.effective_to))
    fields += [
        ("rows", manifest.rows),
        ("files", list(manifest.files)),
        ("checksum", checksum),
        ("illustrative", manifest.illustrative),
    ]
    if manifest.created is not None:
        fields.append(("created", manifest.created))
    if manifest.notes:
        fields.append(("notes", manifest.notes))
    if manifest.release_date is not None:
        fields.append(("release_date", manifest.release_date))
    if manifest.covers_text:
        fields.append(("covers", manifest.covers_text))
    if manifest.approximation:
        fields.append(("approximation", manifest.approximation))
    if manifest.source_files:
        fields.append(("source_files", list(manifest.source_files)))
    if manifest.imported is not None:
        fields += manifest.imported.fields()
    text = "".join(f"{key} = {_toml_value(value)}\n" for key, value in fields)
    (folder / MANIFEST).write_text(text, encoding="utf-8")
    return read_manifest(folder)


def discover(directory: Path) -> list[TableVersion]:
    """Every `<kind>/<version>/manifest.toml` under `directory`, sorted by kind then date."""
    if not directory.is_dir():
        raise CodeTableError(f"code tables folder {directory} does not exist")
    found = [
        read_manifest(path.parent)
        for path in sorted(directory.glob(f"*/*/{MANIFEST}"))
        if not path.parent.name.startswith(".")  # an import still being written
    ]
    seen: dict[str, Path] = {}
    for manifest in found:
        assert manifest.folder is not None
        if manifest.kind != manifest.folder.parent.name:
            raise CodeTableError(
                f"{manifest.folder}: manifest says kind {manifest.kind} but sits under "
                f"{manifest.folder.parent.name}/"
            )
        if manifest.version in seen:
            raise CodeTableError(
                f"table version {manifest.version} appears twice: {seen[manifest.version]} "
                f"and {manifest.folder}"
            )
        seen[manifest.version] = manifest.folder
    return sorted(found, key=lambda m: (m.kind, m.effective_from, m.version))
