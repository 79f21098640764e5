"""`labintake codes import icd10cm`: the CMS order file (with its addenda and the tabular XML)
as published, through the CLI, into a release that `codes list` shows and verification uses
on the dates of its window. Fixtures under `tests/fixtures/icd10cm/` are small but in the exact
published layouts (fixed-width order file with CRLF line ends, the action-labelled addenda, the
tabular XML); `icd10cm_order_2026.txt` is an April-update variant under the older file naming."""

from __future__ import annotations

import shutil
from datetime import date
from pathlib import Path

import pytest
from typer.testing import CliRunner

from labintake.cli import app
from labintake.codes.icd10_import import compile_entries, file_year, parse_record, read_order_file
from labintake.codes.tables import load_code_tables
from labintake.errors import CodeTableError
from labintake.statuses import FindingCode
from labintake.verification.engine import verify
from labintake.verification.facts import DiagnosisFacts, OrderFacts, TestFacts

REPO = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures" / "icd10cm"
ORDER_2027 = FIXTURES / "icd10cm-order-2027.txt"
ADDENDA_2027 = FIXTURES / "icd10cm-order-addenda-2027.txt"
TABULAR_2027 = FIXTURES / "icd10cm-tabular-2027.xml"
APRIL_2026 = FIXTURES / "icd10cm_order_2026.txt"
runner = CliRunner()


@pytest.fixture
def tables_dir(tmp_path: Path) -> Path:
    target = tmp_path / "code_tables"
    shutil.copytree(REPO / "code_tables", target)
    return target


def _import(tables_dir: Path, *args: str | Path) -> tuple[int, str]:
    result = runner.invoke(
        app, ["codes", "import", "icd10cm", *map(str, args), "--dir", str(tables_dir)]
    )
    return result.exit_code, result.output


def _facts(dos: date, *dx: str) -> OrderFacts:
    return OrderFacts(
        tests=(TestFacts(1, "OBR[1]-4", "83036", "CPT"),),
        diagnoses=tuple(DiagnosisFacts(code, f"DG1[{i}]-3") for i, code in enumerate(dx, 1)),
        date_of_service=dos,
        provider_npi="1234567893",
        provider_name="Whitfield, Dana",
    )


def test_october_release_imports_lists_and_checks_orders_in_its_window(tables_dir: Path) -> None:
    code, output = _import(
        tables_dir,
        ORDER_2027,
        "--effective-from",
        "2026-10-01",
        "--addenda",
        ADDENDA_2027,
        "--tabular",
        TABULAR_2027,
    )
    assert code == 0, output
    assert "wrote icd10cm version icd10cm-2026-10 (29 codes" in output
    assert "dates of service 2026-10-01 to 2027-09-30" in output
    assert "labintake replay --since 2026-10-01 --apply" in output
    assert "3/1/1" in output  # addenda: added / deleted / revised, all found in the order file

    listed = runner.invoke(app, ["codes", "list", "--dir", str(tables_dir)])
    assert listed.exit_code == 0, listed.output
    assert "icd10cm-2026-10" in listed.output
    assert "2027-09-30" in listed.output
    assert "covers: FY2027: dates of service 2026-10-01 to 2027-09-30" in listed.output
    assert "icd10cm-order-2027.txt sha256:" in listed.output

    tables = load_code_tables(tables_dir)
    choice = tables.icd10_choice(date(2026, 11, 2))
    assert choice.release is not None
    assert (choice.release.version, choice.covered) == ("icd10cm-2026-10", True)
    release = choice.release
    e7801 = release.get("E78.01")
    assert e7801 is not None
    assert (e7801.billable, e7801.header) == (False, True)
    assert release.excludes1_of("E11.9") == ("E10.*",)
    s0000 = release.get("S00.00")
    assert s0000 is not None
    assert s0000.seventh_char_required  # the category's sevenChrDef, inherited
    t360x1 = release.get("T36.0X1")
    assert t360x1 is not None
    assert t360x1.seventh_char_required  # defined after the subcategories: still inherited

    result = verify(_facts(date(2026, 11, 2), "E78.010", "E78.01"), tables)
    assert result.table_versions["icd10cm"] == "icd10cm-2026-10"
    assert [(f.code, f.location) for f in result.findings] == [
        (FindingCode.DX_NOT_BILLABLE, "DG1[2]-3")
    ]
    # FY2026 dates keep the shipped release; FY2028 has nothing loaded
    assert tables.icd10_choice(date(2026, 9, 30)).release.version == "icd10cm-2026-04"  # type: ignore[union-attr]
    late = verify(_facts(date(2027, 10, 1), "E11.9"), tables)
    assert FindingCode.CODE_TABLES_OUT_OF_DATE in {f.code for f in late.findings}
    assert late.table_versions["icd10cm"] == "icd10cm-2026-10"


def test_april_update_takes_its_months_and_needs_its_own_name(tables_dir: Path) -> None:
    code, output = _import(tables_dir, APRIL_2026, "--effective-from", "2026-04-01")
    assert code == 1
    assert "table version icd10cm-2026-04 already exists; give another with --version" in output
    code, output = _import(
        tables_dir, APRIL_2026, "--effective-from", "2026-04-01", "--version", "icd10cm-2026-04-cms"
    )
    assert code == 0, output
    assert "dates of service 2026-04-01 to 2026-09-30" in output  # an April update ends Sep 30
    tables = load_code_tables(tables_dir)

    def used(day: date) -> str | None:
        release = tables.icd10_for(day)
        return release.version if release else None

    assert used(date(2026, 1, 15)) == "icd10cm-2026-04"  # before its April 1: the shipped one
    assert used(date(2026, 4, 1)) == "icd10cm-2026-04-cms"
    assert used(date(2026, 9, 30)) == "icd10cm-2026-04-cms"
    assert used(date(2026, 10, 1)) is None


def test_fiscal_year_of_the_file_must_match_the_dates(tables_dir: Path) -> None:
    code, output = _import(tables_dir, ORDER_2027, "--effective-from", "2025-10-01")
    assert code == 1
    assert "icd10cm-order-2027.txt is the FY2027 release" in output
    code, output = _import(tables_dir, ORDER_2027)
    assert code == 1
    assert "icd10cm needs --effective-from" in output
    code, output = _import(tables_dir, ORDER_2027, "--effective-from", "2027-01-01")
    assert code == 1
    assert "give --effective-to as well" in output
    assert not (tables_dir / "icd10cm" / "icd10cm-2027-01").exists()


def test_a_bad_line_stops_the_import_and_is_named(tables_dir: Path, tmp_path: Path) -> None:
    lines = ORDER_2027.read_bytes().decode("ascii").split("\r\n")
    lines[3] = lines[3][:14] + "Y" + lines[3][15:]  # the complete/header flag
    bad = tmp_path / "icd10cm-order-2027.txt"
    bad.write_bytes("\r\n".join(lines).encode("ascii"))
    code, output = _import(tables_dir, bad, "--effective-from", "2026-10-01")
    assert code == 1
    assert "icd10cm-order-2027.txt line 4: column 15 must be 1 (complete) or 0 (header)" in output
    assert sorted(p.name for p in (tables_dir / "icd10cm").iterdir()) == [
        "icd10cm-2025-04",
        "icd10cm-2026-04",
    ]


def test_addenda_from_another_release_are_refused(tables_dir: Path) -> None:
    code, output = _import(
        tables_dir,
        APRIL_2026,
        "--effective-from",
        "2026-04-01",
        "--version",
        "x",
        "--addenda",
        ADDENDA_2027,
    )
    assert code == 1
    assert "icd10cm-order-addenda-2027.txt line 1: E78.010 is not in the order file" in output


def test_broken_or_foreign_tabular_xml_is_refused(tables_dir: Path, tmp_path: Path) -> None:
    broken = tmp_path / "icd10cm-tabular-2027.xml"
    broken.write_text(TABULAR_2027.read_text(encoding="utf-8").replace("</section>", "", 1))
    code, output = _import(
        tables_dir, ORDER_2027, "--effective-from", "2026-10-01", "--tabular", broken
    )
    assert code == 1
    assert "icd10cm-tabular-2027.xml line" in output
    hostile = tmp_path / "hostile.xml"
    hostile.write_text(
        '<?xml version="1.0"?><!DOCTYPE t [<!ENTITY a "aaaaaaaaaa">'
        '<!ENTITY b "&a;&a;&a;&a;&a;&a;">]><ICD10CM.tabular>&b;</ICD10CM.tabular>'
    )
    code, output = _import(
        tables_dir, ORDER_2027, "--effective-from", "2026-10-01", "--tabular", hostile
    )
    assert code != 0
    code, output = _import(
        tables_dir,
        APRIL_2026,
        "--effective-from",
        "2026-04-01",
        "--version",
        "y",
        "--tabular",
        TABULAR_2027,
    )
    assert code == 1
    assert "the tabular XML has 3 code(s) the order file icd10cm_order_2026.txt lacks" in output


def test_order_file_alone_gives_flags_parents_and_seventh_characters() -> None:
    records = read_order_file(ORDER_2027.read_text(encoding="ascii"), ORDER_2027.name)
    entries = {e.code: e for e in compile_entries(records, None, ORDER_2027.name)}
    assert len(entries) == 29
    assert (entries["S00.00XA"].parent, entries["S00.00XA"].seventh_char_required) == (
        "S00.00",
        True,
    )
    assert entries["S00.00"].seventh_char_required  # lacks only its 7th character
    assert not entries["S00.0"].seventh_char_required  # needs the tabular's rule for that
    assert entries["T36.0X1"].parent == "T36.0"
    assert entries["E78.01"].header
    assert entries["E78.01"].description == "Familial hypercholesterolemia"
    assert all(e.excludes1 == () for e in entries.values())


def test_layout_checks_name_the_column() -> None:
    good = "00001 A000    1 " + "Cholera due to Vibrio cholerae 01, biovar cholerae".ljust(60)
    good += " Cholera due to Vibrio cholerae 01, biovar cholerae"
    assert parse_record(good, "x").code == "A00.0"
    with pytest.raises(CodeTableError, match="columns 1-5"):
        parse_record("0000A" + good[5:], "x")
    with pytest.raises(CodeTableError, match="columns 7-13"):
        parse_record(good[:6] + "A0 0   " + good[13:], "x")
    with pytest.raises(CodeTableError, match="too short"):
        parse_record(good[:70], "x")
    assert (file_year(ORDER_2027), file_year(APRIL_2026), file_year(TABULAR_2027)) == (
        2027,
        2026,
        2027,
    )
