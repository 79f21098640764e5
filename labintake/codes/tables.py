"""All code tables of a process, chosen by date of service.

`load_code_tables(directory)` reads every table version under `code_tables/` (see
`labintake.codes.manifest` for the layout), verifies each checksum and builds:

- ICD-10-CM releases (`icd10cm/`): the one in force on the date of service, else the newest
  one marked out of date (see `labintake.codes.release_choice`);
- the test catalog (`catalog/`): the newest version;
- coverage policies (`coverage/`), bundling tables (`bundling/`) and diagnosis sex/age edits
  (`dxedits/`): the version in force on the date of service (the newest effective one when
  windows overlap).

It never imports `simple_icd_10_cm`; the releases are compiled ahead of time.
"""

from __future__ import annotations

import gzip
import logging
import threading
import tomllib
from collections.abc import Iterable
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from labintake.codes.bundling import Bundling, read_mue_csv, read_ptp_tsv
from labintake.codes.catalog import TestCatalog, read_catalog_csv
from labintake.codes.coverage import load_coverage
from labintake.codes.dx_edits import EDITS_FILE, DiagnosisEdits, read_dx_edits_toml
from labintake.codes.icd10 import Icd10Release
from labintake.codes.manifest import TableVersion, discover, verify_checksum
from labintake.codes.policies import CoveragePolicies
from labintake.codes.release_choice import ReleaseChoice, choose_release, ends_before
from labintake.errors import CodeTableError

if TYPE_CHECKING:
    from labintake.config import Settings

ICD10_FILE = "icd10cm.tsv.gz"
CATALOG_FILE = "catalog.csv"
NO_VERSION = "none"

T = TypeVar("T")
log = logging.getLogger(__name__)


def _newest_covering(items: Iterable[tuple[TableVersion, T]], dos: date) -> T | None:
    best: tuple[TableVersion, T] | None = None
    for manifest, item in items:
        if manifest.covers(dos) and (
            best is None or manifest.effective_from >= best[0].effective_from
        ):
            best = (manifest, item)
    return None if best is None else best[1]


class CodeTables:
    """The code tables one verification uses; constructed by `load_code_tables` or, in tests,
    directly from in-memory tables (manifests are then synthesised)."""

    def __init__(
        self,
        *,
        icd10: Iterable[Icd10Release] = (),
        catalog: TestCatalog | None = None,
        policies: Iterable[tuple[TableVersion, CoveragePolicies]] | CoveragePolicies = (),
        bundling: Iterable[tuple[TableVersion, Bundling]] | Bundling = (),
        dx_edits: Iterable[tuple[TableVersion, DiagnosisEdits]] | DiagnosisEdits = (),
        manifests: Iterable[TableVersion] = (),
        pinned: str | None = None,
    ) -> None:
        self._icd10 = sorted(icd10, key=lambda r: r.effective_from)
        self.catalog = catalog if catalog is not None else TestCatalog(NO_VERSION, [])
        self._policies = (
            [(_open_ended("coverage", policies.version), policies)]
            if isinstance(policies, CoveragePolicies)
            else list(policies)
        )
        self._bundling = (
            [(_open_ended("bundling", bundling.version), bundling)]
            if isinstance(bundling, Bundling)
            else list(bundling)
        )
        self._dx_edits = (
            [(_open_ended("dxedits", dx_edits.version), dx_edits)]
            if isinstance(dx_edits, DiagnosisEdits)
            else list(dx_edits)
        )
        self._manifests = list(manifests)
        self.pinned = pinned

    def icd10_releases(self) -> list[Icd10Release]:
        return list(self._icd10)

    def icd10_choice(self, dos: date) -> ReleaseChoice[Icd10Release]:
        """The release that checks an order dated `dos`: the one in force, else the newest
        loaded one marked out of date (see `labintake.codes.release_choice`)."""
        return choose_release(self._icd10, dos, pinned=self.pinned)

    def icd10_for(self, dos: date) -> Icd10Release | None:
        """The release in force on the date of service (None when no loaded release covers it)."""
        choice = self.icd10_choice(dos)
        return choice.release if choice.covered else None

    def icd10_stale(self, today: date) -> Icd10Release | None:
        """The newest release when every loaded window ended before `today` (else None)."""
        found = ends_before(self._icd10, today)
        return next((r for r in self._icd10 if r is found), None)

    def icd10_version(self, version: str) -> Icd10Release | None:
        return next((r for r in self._icd10 if r.version == version), None)

    def policies_for(self, dos: date) -> CoveragePolicies:
        """Coverage in force on the date; an empty set (version "none") when none covers it."""
        found = self._pick(self._policies, dos)
        return found if found is not None else CoveragePolicies(version=NO_VERSION)

    def bundling_for(self, dos: date) -> Bundling:
        found = self._pick(self._bundling, dos)
        return found if found is not None else Bundling(NO_VERSION)

    def dx_edits_for(self, dos: date) -> DiagnosisEdits:
        """Sex and age edits in force on the date; none (version "none") when none covers it."""
        found = self._pick(self._dx_edits, dos)
        return found if found is not None else DiagnosisEdits(NO_VERSION)

    def _pick(self, items: list[tuple[TableVersion, T]], dos: date) -> T | None:
        if self.pinned:
            for manifest, item in items:
                if manifest.version == self.pinned:
                    return item
        return _newest_covering(items, dos)

    def versions_for(self, dos: date) -> dict[str, str]:
        """kind -> version id of every table a verification on this date uses."""
        icd = self.icd10_choice(dos).release
        return {
            "icd10cm": icd.version if icd is not None else NO_VERSION,
            "catalog": self.catalog.version,
            "coverage": self.policies_for(dos).version,
            "bundling": self.bundling_for(dos).version,
            "dxedits": self.dx_edits_for(dos).version,
        }

    def manifests(self) -> list[TableVersion]:
        if self._manifests:
            return list(self._manifests)
        synthesised = [
            TableVersion(
                "icd10cm",
                r.version,
                "in memory",
                r.effective_from,
                r.effective_to,
                len(r),
                "",
                False,
                release_date=r.release_date,
            )
            for r in self._icd10
        ]
        synthesised.append(
            TableVersion(
                "catalog",
                self.catalog.version,
                "in memory",
                date.min,
                None,
                len(self.catalog),
                "",
                False,
            )
        )
        return (
            synthesised
            + [m for m, _ in self._policies]
            + [m for m, _ in self._bundling]
            + [m for m, _ in self._dx_edits]
        )


def _open_ended(kind: str, version: str) -> TableVersion:
    return TableVersion(kind, version, "in memory", date.min, None, 0, "", False)


def _read_text(manifest: TableVersion, name: str) -> str:
    assert manifest.folder is not None
    path = manifest.folder / name
    try:
        raw = path.read_bytes()
        if name.endswith(".gz"):
            raw = gzip.decompress(raw)
        return raw.decode("utf-8")
    except (OSError, EOFError, gzip.BadGzipFile, UnicodeDecodeError) as exc:
        raise CodeTableError(f"{path}: cannot read: {exc}") from exc


def load_icd10(manifest: TableVersion, *, check_rows: bool = True) -> Icd10Release:
    if ICD10_FILE not in manifest.files:
        raise CodeTableError(f"{manifest.version}: manifest does not list {ICD10_FILE}")
    try:
        release = Icd10Release(
            manifest.version,
            manifest.effective_from,
            manifest.effective_to,
            _read_text(manifest, ICD10_FILE),
            release_date=manifest.release_date,
        )
    except ValueError as exc:
        raise CodeTableError(str(exc)) from exc
    if check_rows and len(release) != manifest.rows:
        raise CodeTableError(
            f"{manifest.version}: {len(release)} rows, manifest says {manifest.rows}"
        )
    return release


def load_catalog(manifest: TableVersion) -> TestCatalog:
    result = read_catalog_csv(_read_text(manifest, CATALOG_FILE))
    if result.problems:
        first = result.problems[0]
        raise CodeTableError(
            f"{manifest.version} {CATALOG_FILE} line {first.line}: {first.reason} "
            f"({len(result.problems)} bad row(s))"
        )
    return TestCatalog(manifest.version, result.entries)


def load_bundling(manifest: TableVersion) -> Bundling:
    assert manifest.folder is not None
    where = str(manifest.folder)
    try:
        edits = read_ptp_tsv(_read_text(manifest, "ptp.tsv"), f"{where}/ptp.tsv")
        limits = read_mue_csv(_read_text(manifest, "mue.csv"), f"{where}/mue.csv")
        panels_data = tomllib.loads(_read_text(manifest, "panels.toml")).get("panels", {})
        panels = {str(k): tuple(str(c) for c in v["components"]) for k, v in panels_data.items()}
    except (ValueError, KeyError, TypeError) as exc:
        raise CodeTableError(f"{where}: {exc}") from exc
    return Bundling(manifest.version, edits, limits, panels)


def load_dx_edits(manifest: TableVersion) -> DiagnosisEdits:
    assert manifest.folder is not None
    try:
        return read_dx_edits_toml(
            _read_text(manifest, EDITS_FILE), manifest.version, str(manifest.folder / EDITS_FILE)
        )
    except ValueError as exc:
        raise CodeTableError(str(exc)) from exc


def load_code_tables(directory: Path, *, only_version: str | None = None) -> CodeTables:
    """Load and checksum-verify every table version under `directory`.

    `only_version` pins one table version (e.g. `icd10cm-2025-04` for a replay): it is used
    for every date of service, other versions of its kind are left out, other kinds load as
    usual. CodeTableError when the folder, a manifest or a checksum is wrong.
    """
    manifests = discover(directory)
    if only_version is not None:
        pinned = [m for m in manifests if m.version == only_version]
        if not pinned:
            known = ", ".join(m.version for m in manifests)
            raise CodeTableError(f"no table version {only_version!r} (known: {known})")
        kind = pinned[0].kind
        manifests = [m for m in manifests if m.kind != kind or m.version == only_version]
    for manifest in manifests:
        verify_checksum(manifest)
    by_kind: dict[str, list[TableVersion]] = {}
    for manifest in manifests:
        by_kind.setdefault(manifest.kind, []).append(manifest)
    catalogs = by_kind.get("catalog", [])
    if not catalogs:
        raise CodeTableError(f"{directory}: no catalog table version")
    catalog = load_catalog(max(catalogs, key=lambda m: (m.effective_from, m.version)))
    policies = []
    for m in by_kind.get("coverage", []):
        assert m.folder is not None
        policies.append((m, load_coverage(m.folder, m.version, m.files)))
    return CodeTables(
        icd10=[load_icd10(m) for m in by_kind.get("icd10cm", [])],
        catalog=catalog,
        policies=policies,
        bundling=[(m, load_bundling(m)) for m in by_kind.get("bundling", [])],
        dx_edits=[(m, load_dx_edits(m)) for m in by_kind.get("dxedits", [])],
        manifests=manifests,
        pinned=only_version,
    )


_cache: dict[Path, CodeTables] = {}
_cache_lock = threading.Lock()


def get_code_tables(settings: Settings) -> CodeTables:
    """The process's code tables for `settings.code_tables_dir`, loaded once."""
    directory = settings.code_tables_dir.resolve()
    with _cache_lock:
        tables = _cache.get(directory)
        if tables is None:
            tables = load_code_tables(directory)
            _cache[directory] = tables
            log_icd10_status(tables, date.today())
        return tables


def log_icd10_status(tables: CodeTables, today: date) -> str | None:
    """Warn in the log when no loaded ICD-10-CM release covers today; returns the line."""
    stale = tables.icd10_stale(today)
    if stale is not None:
        assert stale.effective_to is not None
        from labintake.codes.release_choice import fiscal_year

        fy = fiscal_year(today)
        line = (
            f"ICD-10-CM code tables out of date: the newest loaded release {stale.version} "
            f"ends {stale.effective_to:%Y-%m-%d}; orders dated after that are checked against "
            f"it with a CODE_TABLES_OUT_OF_DATE finding. Load the FY{fy} release: labintake "
            f"codes import icd10cm icd10cm-order-{fy}.txt --effective-from {fy - 1}-10-01"
        )
    elif not tables.icd10_releases():
        line = "no ICD-10-CM release is loaded: diagnoses cannot be checked"
    else:
        return None
    log.warning(line)
    return line


def clear_code_tables_cache() -> None:
    with _cache_lock:
        _cache.clear()
