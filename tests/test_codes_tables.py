"""Table versions: manifests, checksums, choice by date of service, pinning, sealing."""

from __future__ import annotations

import shutil
from datetime import date
from pathlib import Path

import pytest

from labintake.codes.bundling import Bundling, MueLimit, PtpEdit
from labintake.codes.catalog import CatalogEntry, TestCatalog
from labintake.codes.manifest import compute_checksum, discover, read_manifest
from labintake.codes.policies import CoveragePolicies
from labintake.codes.tables import (
    CodeTables,
    clear_code_tables_cache,
    get_code_tables,
    load_code_tables,
)
from labintake.codes.versions import seal
from labintake.config import Settings
from labintake.errors import CodeTableError

REPO = Path(__file__).resolve().parent.parent
SMALL_KINDS = ("catalog", "coverage", "bundling")


@pytest.fixture
def small_tables(tmp_path: Path) -> Path:
    """A copy of the shipped catalog, coverage and bundling tables (no ICD releases)."""
    target = tmp_path / "code_tables"
    for kind in SMALL_KINDS:
        shutil.copytree(REPO / "code_tables" / kind, target / kind)
    return target


def test_every_shipped_manifest_verifies_and_counts_its_rows() -> None:
    manifests = discover(REPO / "code_tables")
    assert {m.kind for m in manifests} == {"icd10cm", "catalog", "coverage", "bundling", "dxedits"}
    for manifest in manifests:
        assert manifest.folder is not None
        assert compute_checksum(manifest.folder, manifest.files) == manifest.checksum
        assert manifest.rows > 0
        assert manifest.source
    illustrative = {m.kind for m in manifests if m.illustrative}
    assert {"coverage", "bundling", "dxedits"} <= illustrative


def test_versions_for_a_date_name_every_table_used() -> None:
    tables = load_code_tables(REPO / "code_tables")
    assert tables.versions_for(date(2026, 5, 1)) == {
        "icd10cm": "icd10cm-2026-04",
        "catalog": "catalog-2026.1",
        "coverage": "coverage-2026.4",
        "bundling": "bundling-2025.1",
        "dxedits": "dxedits-2026.1",
    }
    assert tables.versions_for(date(2025, 6, 1))["icd10cm"] == "icd10cm-2025-04"
    assert tables.versions_for(date(2024, 6, 1))["coverage"] == "none"


def test_changed_data_file_fails_its_checksum(small_tables: Path) -> None:
    ptp = small_tables / "bundling" / "bundling-2025.1" / "ptp.tsv"
    ptp.write_text(ptp.read_text(encoding="utf-8").replace("\t0\t", "\t1\t", 1), encoding="utf-8")
    with pytest.raises(CodeTableError, match=r"bundling-2025\.1: checksum mismatch"):
        load_code_tables(small_tables)


def test_missing_data_file_is_refused(small_tables: Path) -> None:
    (small_tables / "coverage" / "coverage-2026.4" / "payers.toml").unlink()
    with pytest.raises(CodeTableError, match=r"payers\.toml"):
        load_code_tables(small_tables)


def test_sealing_after_an_edit_makes_the_version_load_again(small_tables: Path) -> None:
    folder = small_tables / "coverage" / "coverage-2026.4"
    payers = folder / "payers.toml"
    payers.write_text(
        payers.read_text(encoding="utf-8").replace('"MCR"', '"MCR", "MEDI-CAL"'),
        encoding="utf-8",
    )
    with pytest.raises(CodeTableError):
        load_code_tables(small_tables)
    sealed = seal(folder)
    tables = load_code_tables(small_tables)
    assert sealed.checksum == read_manifest(folder).checksum
    assert tables.policies_for(date(2026, 1, 1)).medicare_applies("MEDI-CAL", "", "")


def test_bad_policy_data_is_refused_with_its_file(small_tables: Path) -> None:
    folder = small_tables / "coverage" / "coverage-2026.4"
    lipids = folder / "ncd-190.23.toml"
    lipids.write_text(
        lipids.read_text(encoding="utf-8").replace('"I10",', '"hypertension",'), encoding="utf-8"
    )
    with pytest.raises(CodeTableError, match=r"ncd-190\.23\.toml covered"):
        seal(folder)


def test_a_folder_without_a_catalog_is_refused(small_tables: Path) -> None:
    shutil.rmtree(small_tables / "catalog")
    with pytest.raises(CodeTableError, match="no catalog"):
        load_code_tables(small_tables)


def test_missing_folder_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(CodeTableError, match="does not exist"):
        load_code_tables(tmp_path / "nowhere")


def test_manifest_under_the_wrong_kind_folder_is_refused(small_tables: Path) -> None:
    shutil.move(small_tables / "bundling" / "bundling-2025.1", small_tables / "coverage")
    with pytest.raises(CodeTableError, match="kind bundling but sits under coverage"):
        load_code_tables(small_tables)


def test_newer_version_takes_over_from_its_effective_date(small_tables: Path) -> None:
    old = small_tables / "bundling" / "bundling-2025.1"
    new = small_tables / "bundling" / "bundling-2026.2"
    shutil.copytree(old, new)
    manifest = (new / "manifest.toml").read_text(encoding="utf-8")
    manifest = manifest.replace('"bundling-2025.1"', '"bundling-2026.2"').replace(
        "effective_from = 2025-01-01", "effective_from = 2026-04-01"
    )
    (new / "manifest.toml").write_text(manifest, encoding="utf-8")
    tables = load_code_tables(small_tables)
    assert tables.bundling_for(date(2026, 3, 31)).version == "bundling-2025.1"
    assert tables.bundling_for(date(2026, 4, 1)).version == "bundling-2026.2"
    pinned = load_code_tables(small_tables, only_version="bundling-2025.1")
    assert pinned.bundling_for(date(2026, 6, 1)).version == "bundling-2025.1"
    assert [m.version for m in pinned.manifests() if m.kind == "bundling"] == ["bundling-2025.1"]


def test_pinning_an_icd_release_uses_it_for_every_date() -> None:
    tables = load_code_tables(REPO / "code_tables", only_version="icd10cm-2025-04")
    inside = tables.icd10_choice(date(2025, 6, 1))
    outside = tables.icd10_choice(date(2026, 6, 1))
    assert inside.release is not None
    assert outside.release is not None
    assert (inside.release.version, inside.covered) == ("icd10cm-2025-04", True)
    # pinned, yet never silently stretched: outside its window it is marked out of date
    assert (outside.release.version, outside.covered, outside.why) == (
        "icd10cm-2025-04",
        False,
        "pinned",
    )
    assert len(tables.icd10_releases()) == 1


def test_pinning_an_unknown_version_is_refused() -> None:
    with pytest.raises(CodeTableError, match="no table version 'icd10cm-1999-04'"):
        load_code_tables(REPO / "code_tables", only_version="icd10cm-1999-04")


def test_get_code_tables_loads_once_per_folder(small_tables: Path) -> None:
    settings = Settings(development=True, code_tables_dir=small_tables)
    clear_code_tables_cache()
    try:
        first = get_code_tables(settings)
        assert get_code_tables(settings) is first
    finally:
        clear_code_tables_cache()


def test_in_memory_tables_for_unit_tests_synthesise_their_manifests() -> None:
    tables = CodeTables(
        catalog=TestCatalog("cat-t", [CatalogEntry("GLU", "2345-7", "82947", "Glucose", "serum")]),
        policies=CoveragePolicies(version="cov-t"),
        bundling=Bundling(
            "bun-t",
            [PtpEdit("80053", "80048", "0", date(1996, 1, 1))],
            [MueLimit("80053", 1, 2)],
            {"80061": ("82465", "83718", "84478")},
        ),
    )
    day = date(2026, 1, 1)
    assert tables.versions_for(day) == {
        "icd10cm": "none",
        "catalog": "cat-t",
        "coverage": "cov-t",
        "bundling": "bun-t",
        "dxedits": "none",
    }
    assert {m.version for m in tables.manifests()} == {"cat-t", "cov-t", "bun-t"}
    bundling = tables.bundling_for(day)
    assert bundling.ptp("80048", "80053", day) is not None
    assert bundling.ptp("80053", "80048", date(1995, 12, 31)) is None
    assert bundling.mue("80053") == MueLimit("80053", 1, 2)
    assert bundling.panels_containing("83718") == ["80061"]


def test_shipped_bundling_has_the_lab_panel_edits() -> None:
    bundling = load_code_tables(REPO / "code_tables").bundling_for(date(2026, 5, 1))
    day = date(2026, 5, 1)
    overlap = bundling.ptp("80048", "80053", day)
    ldl = bundling.ptp("83721", "80061", day)
    assert overlap is not None
    assert overlap.modifier_indicator == "0"
    assert ldl is not None
    assert ldl.modifier_indicator == "1"
    assert bundling.ptp("82947", "80053", day) is not None
    assert bundling.ptp("84478", "80061", day) is not None
    assert bundling.ptp("85025", "80061", day) is None
    assert bundling.panel_components("80048") == (
        "82310",
        "82374",
        "82435",
        "82565",
        "82947",
        "84132",
        "84295",
        "84520",
    )
    assert set(bundling.panel_components("80048")) <= set(bundling.panel_components("80053"))
    for cpt in ("85025", "80053", "80061", "83036"):
        limit = bundling.mue(cpt)
        assert limit is not None
        assert limit.units == 1


def test_loading_the_tables_never_imports_the_icd_package() -> None:
    import subprocess
    import sys

    script = (
        "import sys; from pathlib import Path; "
        "from labintake.codes.tables import load_code_tables; "
        f"load_code_tables(Path({str(REPO / 'code_tables')!r})); "
        "print('simple_icd_10_cm' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", script], check=True, capture_output=True, text=True)
    assert out.stdout.strip() == "False"


def test_a_half_written_import_folder_is_ignored(small_tables: Path) -> None:
    shutil.copytree(
        small_tables / "bundling" / "bundling-2025.1",
        small_tables / "bundling" / ".bundling-2026.1.partial",
    )
    tables = load_code_tables(small_tables)
    assert [m.version for m in tables.manifests() if m.kind == "bundling"] == ["bundling-2025.1"]
