"""Writing table versions: sealing a folder edited by hand, and adding a new version.

A new version is assembled in a hidden temporary folder beside its final place and renamed
into place only once its data loads and its manifest is written, so a failed import leaves
nothing half-written behind.
"""

from __future__ import annotations

import shutil
import tomllib
from collections.abc import Mapping
from dataclasses import replace
from datetime import date
from pathlib import Path

from labintake.codes.coverage import load_coverage
from labintake.codes.manifest import KINDS, MANIFEST, TableVersion, read_manifest, write_manifest
from labintake.codes.tables import load_bundling, load_catalog, load_dx_edits, load_icd10
from labintake.errors import CodeTableError


def count_rows(manifest: TableVersion) -> int:
    """Load the folder's data (which validates it) and count its rows.

    icd10cm: codes; catalog: tests; coverage: code-list patterns of every policy plus
    screening benefits plus never-covered patterns; bundling: PTP edits + MUE limits + panels;
    dxedits: sex and age edits.
    """
    assert manifest.folder is not None
    if manifest.kind == "icd10cm":
        return len(load_icd10(replace(manifest, rows=-1), check_rows=False))
    if manifest.kind == "catalog":
        return len(load_catalog(manifest))
    if manifest.kind == "coverage":
        policies = load_coverage(manifest.folder, manifest.version, manifest.files)
        patterns = sum(len(p.covered) + len(p.not_covered) for p in policies.ncds + policies.lcds)
        return patterns + len(policies.screening) + len(policies.never_covered)
    if manifest.kind == "dxedits":
        return len(load_dx_edits(manifest))
    bundling = load_bundling(manifest)
    return bundling.edit_count + bundling.mue_count() + len(bundling.panels())


def _draft_manifest(folder: Path) -> TableVersion:
    """The manifest as written, tolerating a missing or stale rows/checksum (to be sealed)."""
    path = folder / MANIFEST
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise CodeTableError(f"{path}: {exc}") from exc
    data.setdefault("rows", 0)
    data.setdefault("checksum", "")
    if "files" not in data:
        data["files"] = sorted(
            p.name for p in folder.iterdir() if p.is_file() and p.name != MANIFEST
        )
    lines = []
    for key, value in data.items():
        lines.append(f"{key} = {_literal(value)}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return read_manifest(folder)


def _literal(value: object) -> str:
    import json

    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | date):
        return str(value) if isinstance(value, int) else value.isoformat()
    if isinstance(value, list):
        return "[" + ", ".join(_literal(v) for v in value) + "]"
    return json.dumps(str(value), ensure_ascii=False)


def seal(folder: Path) -> TableVersion:
    """Recompute rows and checksum of a table folder after its data was edited by hand."""
    manifest = _draft_manifest(folder)
    if manifest.kind not in KINDS:
        raise CodeTableError(f"{folder}: unknown kind {manifest.kind}")
    return write_manifest(folder, replace(manifest, rows=count_rows(manifest)))


def create_version(
    directory: Path,
    manifest: TableVersion,
    files: Mapping[str, bytes],
    copy_from: TableVersion | None = None,
) -> TableVersion:
    """Write a new table version `directory/<kind>/<version>/` with the given files, plus the
    files of `copy_from` that are not replaced; rows and checksum are computed."""
    final = directory / manifest.kind / manifest.version
    if final.exists():
        raise CodeTableError(f"table version {manifest.version} already exists at {final}")
    staging = final.parent / f".{manifest.version}.partial"
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    try:
        names: list[str] = []
        if copy_from is not None:
            assert copy_from.folder is not None
            for name in copy_from.files:
                if name not in files:
                    shutil.copyfile(copy_from.folder / name, staging / name)
                    names.append(name)
        for name, data in files.items():
            (staging / name).write_bytes(data)
            names.append(name)
        draft = replace(manifest, files=tuple(sorted(names)), folder=staging, rows=0)
        draft = replace(draft, rows=count_rows(draft))
        write_manifest(staging, draft)
        staging.rename(final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return read_manifest(final)
