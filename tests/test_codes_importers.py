"""Importing official files: CMS PTP text, CMS MUE CSV, NCD code lists, a lab's catalog.

The sample files are synthetic, written in the official layouts (not copies of CMS data).
"""

from __future__ import annotations

import hashlib
import shutil
from datetime import date
from pathlib import Path

import pytest

from labintake.codes.importers import read_mue_csv_cms, read_ncd_csv, read_ptp_text
from labintake.codes.importing import import_file
from labintake.codes.tables import load_code_tables
from labintake.codes.versions import seal
from labintake.errors import CodeTableError

REPO = Path(__file__).resolve().parent.parent

PTP_TEXT = (
    "CMS National Correct Coding Initiative - Practitioner PTP Edits (synthetic sample)\n"
    "Column 1\tColumn 2\t*=In existence prior to 1996\tEffective Date\tDeletion Date "
    "*=no data\tModifier 0=not allowed 1=allowed 9=not applicable\tPTP Edit Rationale\n"
    "80053\t80048\t\t20020101\t*\t0\tMisuse of column two code with column one code\n"
    "80061\t83721\t\t20080101\t*\t1\tStandards of medical / surgical practice\n"
    "80053\t82947\t*\t19960101\t*\t0\tPanel component\n"
    "85025\t85027\t\t20010101\t20190101\t0\tDeleted pair\n"
    "99213\t36415\t\t20000101\t*\t1\tEvaluation and management with venipuncture\n"
    "80053\t8204\t\t20020101\t*\t0\tShort code\n"
    "80053\t82040\t\t20021301\t*\t0\tBad month\n"
    "80053\t82247\t\t20020101\t*\t5\tBad modifier\n"
    "80053\t82310\t\t20020101\n"
    "80053\t82374\t\t20100101\t20050101\t0\tDeleted before effective\n"
)

MUE_CSV = (
    '"CPT codes, descriptions and other data only are copyright AMA (synthetic sample)"\n'
    "\n"
    '"HCPCS/CPT Code","Practitioner Services MUE Values","MUE Adjudication Indicator",'
    '"MUE Rationale"\n'
    '"80053","1","2 Date of Service Edit: Policy","CMS Policy"\n'
    '"83036","1","3 Date of Service Edit: Clinical","Clinical: Data"\n'
    '"G0103","1","2 Date of Service Edit: Policy","Nature of Service/Procedure"\n'
    '"99213","1","3 Date of Service Edit: Clinical","Clinical: Data"\n'
    '"8005","1","2 Date of Service Edit: Policy","Short code"\n'
    '"85025","one","3 Date of Service Edit: Clinical","Words"\n'
    '"85027","2","7 Unknown","Bad indicator"\n'
    '"80053","2","2 Date of Service Edit: Policy","Repeated"\n'
)

NCD_CSV = (
    "ncd,list,code,title\n"
    "190.23,hcpcs,80061,Lipid Testing\n"
    "190.23,hcpcs,83721,\n"
    "190.23,covered,E78.00-E78.5,\n"
    "190.23,covered,E11.*,\n"
    "190.23,does_not_support,Z13.220,\n"
    "190.34,hcpcs,82272,Fecal Occult Blood Test\n"
    "190.34,covered,K92.1,\n"
    "190.23,covered,not-a-code,\n"
    "19x,covered,E11.9,\n"
    "190.23,maybe,E11.9,\n"
    "190.23,hcpcs,E11.9,\n"
)


def _drop_policy_file(folder: Path, name: str) -> None:
    manifest = folder / "manifest.toml"
    (folder / name).unlink()
    manifest.write_text(
        manifest.read_text(encoding="utf-8").replace(f'"{name}", ', ""), encoding="utf-8"
    )
    seal(folder)


@pytest.fixture
def tables_dir(tmp_path: Path) -> Path:
    target = tmp_path / "code_tables"
    for kind in ("catalog", "coverage", "bundling"):
        shutil.copytree(REPO / "code_tables" / kind, target / kind)
    return target


def test_ptp_reader_keeps_lab_pairs_and_reports_each_bad_row() -> None:
    result = read_ptp_text(PTP_TEXT)
    assert result.rows_read == 10
    assert [(e.column1, e.column2, e.modifier_indicator) for e in result.edits] == [
        ("80053", "80048", "0"),
        ("80061", "83721", "1"),
        ("80053", "82947", "0"),
        ("85025", "85027", "0"),
    ]
    assert result.edits[0].effective == date(2002, 1, 1)
    assert result.edits[0].deleted is None
    assert result.edits[3].deleted == date(2019, 1, 1)
    assert result.skipped == 1  # 99213/36415 is not a laboratory pair
    assert [r.line for r in result.rejected] == [8, 9, 10, 11, 12]
    assert set(result.reasons()) == {
        "code is not a CPT/HCPCS code",
        "date is not YYYYMMDD",
        "modifier indicator must be 0, 1 or 9",
        "not a PTP row",
        "deletion before effective date",
    }


def test_ptp_reader_keeps_every_pair_when_asked() -> None:
    result = read_ptp_text(PTP_TEXT, lab_only=False)
    assert result.skipped == 0
    assert ("99213", "36415") in {(e.column1, e.column2) for e in result.edits}


def test_ptp_reader_says_when_a_file_has_no_rows() -> None:
    result = read_ptp_text("just a title\nand a heading\n")
    assert result.edits == []
    assert "no PTP rows" in result.rejected[0].reason


def test_mue_reader_finds_the_heading_and_reports_bad_rows() -> None:
    result = read_mue_csv_cms(MUE_CSV)
    assert [(m.cpt, m.units, m.mai) for m in result.limits] == [
        ("80053", 1, 2),
        ("83036", 1, 3),
        ("G0103", 1, 2),
    ]
    assert result.skipped == 1  # 99213
    assert set(result.reasons()) == {
        "code is not a CPT/HCPCS code",
        "MUE value is not a whole number",
        "adjudication indicator not 1-3",
        "code listed twice",
    }


def test_ncd_reader_groups_lists_and_reports_bad_rows() -> None:
    result = read_ncd_csv(NCD_CSV)
    assert result.ncd_lists["190.23"] == {
        "covered": ["E78.00-E78.5", "E11.*"],
        "not_covered": ["Z13.220"],
        "hcpcs": ["80061", "83721"],
    }
    assert result.ncd_titles == {"190.23": "Lipid Testing", "190.34": "Fecal Occult Blood Test"}
    assert [r.line for r in result.rejected] == [9, 10, 11, 12]


def test_importing_ptp_writes_a_new_bundling_version_in_force_from_its_date(
    tables_dir: Path, tmp_path: Path
) -> None:
    source = tmp_path / "ptp.txt"
    source.write_text(PTP_TEXT, encoding="utf-8")
    outcome = import_file("ncci-ptp", source, tables_dir, effective_from=date(2026, 7, 1))
    assert outcome.written is not None
    assert outcome.written.version == "bundling-2026-07-01"
    assert outcome.based_on is not None
    assert outcome.based_on.version == "bundling-2025.1"
    tables = load_code_tables(tables_dir)
    old, new = tables.bundling_for(date(2026, 6, 30)), tables.bundling_for(date(2026, 7, 1))
    assert (old.version, new.version) == ("bundling-2025.1", "bundling-2026-07-01")
    assert new.edit_count == 4
    deleted = new.ptp("85027", "85025", date(2026, 7, 1))
    assert deleted is None  # the imported pair was deleted in 2019
    assert new.ptp("85027", "85025", date(2018, 6, 1)) is not None
    assert new.mue("80053") == old.mue("80053")  # MUE and panels carried over
    assert new.panel_components("80061") == ("82465", "83718", "84478")


def test_importing_mue_replaces_limits_and_keeps_ptp(tables_dir: Path, tmp_path: Path) -> None:
    source = tmp_path / "mue.csv"
    source.write_text(MUE_CSV, encoding="utf-8")
    outcome = import_file("mue", source, tables_dir, effective_from=date(2026, 10, 1))
    assert outcome.written is not None
    assert outcome.result.kept == 3
    new = load_code_tables(tables_dir).bundling_for(date(2026, 10, 1))
    assert new.mue("85025") is None
    assert new.mue("G0103") is not None
    assert new.ptp("80053", "80048", date(2026, 10, 1)) is not None


def test_importing_ncd_lists_overrides_those_ncds_and_adds_new_ones(
    tables_dir: Path, tmp_path: Path
) -> None:
    base = tables_dir / "coverage" / "coverage-2026.4"
    _drop_policy_file(base, "ncd-190.34.toml")  # so that the import must add 190.34
    source = tmp_path / "ncd.csv"
    source.write_text(NCD_CSV, encoding="utf-8")
    outcome = import_file("ncd", source, tables_dir, effective_from=date(2026, 4, 1))
    assert outcome.written is not None
    policies = load_code_tables(tables_dir).policies_for(date(2026, 4, 1))
    lipids = policies.ncd("190.23")
    fobt = policies.ncd("190.34")
    assert lipids is not None
    assert fobt is not None
    assert lipids.cpts == ("80061", "83721")
    assert lipids.supports("E11.65")
    assert lipids.complete  # the official list replaces the partial transcription
    assert not lipids.supports("I25.10")
    assert not lipids.supports("E03.9")  # was only awaiting confirmation in the policy file
    assert not lipids.supports("Z13.220")
    assert lipids.frequency  # frequency limits kept from the policy file
    assert fobt.title == "Fecal Occult Blood Test"
    assert fobt.supports("K92.1")
    glucose = policies.ncd("190.20")
    assert glucose is not None
    assert glucose.supports("E11.9")


def test_importing_a_lab_catalog_writes_only_the_good_rows(
    tables_dir: Path, tmp_path: Path
) -> None:
    source = tmp_path / "catalog.csv"
    source.write_text(
        "code,loinc,cpt,description,specimen\n"
        "CHEM14,24323-8,80053,Chemistry 14,serum\n"
        "BAD,,123,Broken,serum\n",
        encoding="utf-8",
    )
    outcome = import_file("catalog", source, tables_dir, effective_from=date(2026, 1, 1))
    assert outcome.written is not None
    assert [r.line for r in outcome.result.rejected] == [3]
    catalog = load_code_tables(tables_dir).catalog
    assert catalog.version == "catalog-2026-01-01"
    assert [e.code for e in catalog] == ["CHEM14"]


def test_strict_import_writes_nothing_when_a_row_is_rejected(
    tables_dir: Path, tmp_path: Path
) -> None:
    source = tmp_path / "ptp.txt"
    source.write_text(PTP_TEXT, encoding="utf-8")
    outcome = import_file("ncci-ptp", source, tables_dir, strict=True)
    assert outcome.written is None
    assert "rejected" in outcome.reason_not_written
    assert sorted(p.name for p in (tables_dir / "bundling").iterdir()) == ["bundling-2025.1"]


def test_file_with_no_usable_row_writes_nothing(tables_dir: Path, tmp_path: Path) -> None:
    source = tmp_path / "empty.csv"
    source.write_text("nothing here\n", encoding="utf-8")
    outcome = import_file("mue", source, tables_dir)
    assert outcome.written is None
    assert outcome.reason_not_written == "no row was kept"


def test_an_existing_version_name_is_not_overwritten(tables_dir: Path, tmp_path: Path) -> None:
    source = tmp_path / "ptp.txt"
    source.write_text(PTP_TEXT, encoding="utf-8")
    with pytest.raises(CodeTableError, match="already exists"):
        import_file("ncci-ptp", source, tables_dir, version="bundling-2025.1")
    first = import_file("ncci-ptp", source, tables_dir, effective_from=date(2026, 7, 1))
    second = import_file("ncci-ptp", source, tables_dir, effective_from=date(2026, 7, 1))
    assert first.written is not None
    assert second.written is not None
    assert second.written.version == "bundling-2026-07-01-2"


def test_windows_1252_files_are_read() -> None:
    from labintake.codes.importers import decode_file

    assert decode_file("Sj\u00f6gren".encode("cp1252")) == "Sj\u00f6gren"
    assert decode_file("\ufeffcode".encode()) == "code"


CATALOG_CSV = "code,loinc,cpt,description,specimen\nCHEM14,24323-8,80053,Chemistry 14,serum\n"


@pytest.mark.parametrize(
    ("kind", "text", "layout"),
    [
        ("ncci-ptp", PTP_TEXT, "cms-ncci-ptp-text"),
        ("mue", MUE_CSV, "cms-mue-csv"),
        ("ncd", NCD_CSV, "ncd-csv"),
        ("catalog", CATALOG_CSV, "labintake-catalog-csv"),
    ],
)
def test_every_import_kind_stamps_its_manifest_the_same_way(
    tables_dir: Path, tmp_path: Path, kind: str, text: str, layout: str
) -> None:
    source = tmp_path / f"{kind}-file.txt"
    source.write_text(text, encoding="utf-8")
    outcome = import_file(
        kind, source, tables_dir, effective_from=date(2026, 4, 1), invoked_by=f"test {kind}"
    )
    assert outcome.written is not None
    stamp = outcome.written.imported
    assert stamp is not None
    result = outcome.result
    assert (stamp.file, stamp.by, stamp.layout) == (source.name, f"test {kind}", layout)
    assert stamp.sha256 == "sha256:" + hashlib.sha256(source.read_bytes()).hexdigest()
    assert stamp.at.tzinfo is not None
    assert (stamp.rows_read, stamp.rows_kept, stamp.rows_skipped, stamp.rows_rejected) == (
        result.rows_read,
        result.kept,
        result.skipped,
        len(result.rejected),
    )
    assert outcome.written.effective_from == date(2026, 4, 1)
