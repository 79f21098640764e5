"""`labintake codes list | import | seal | lookup` as a user runs them."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from labintake.cli import app

REPO = Path(__file__).resolve().parent.parent
runner = CliRunner()

PTP_TEXT = (
    "Column 1\tColumn 2\t*=In existence prior to 1996\tEffective Date\tDeletion Date\t"
    "Modifier\tPTP Edit Rationale\n"
    "80053\t80048\t\t20020101\t*\t0\tMisuse of column two code with column one code\n"
    "80061\t83721\t\t20080101\t*\t1\tStandards of medical / surgical practice\n"
    "80053\t82947\t\t2002-01-01\t*\t0\tBad date\n"
)


@pytest.fixture
def tables_dir(tmp_path: Path) -> Path:
    target = tmp_path / "code_tables"
    for kind in ("catalog", "coverage", "bundling"):
        shutil.copytree(REPO / "code_tables" / kind, target / kind)
    return target


def test_codes_list_prints_versions_dates_rows_and_checksums() -> None:
    result = runner.invoke(app, ["codes", "list", "--dir", str(REPO / "code_tables")])
    assert result.exit_code == 0, result.output
    for text in (
        "icd10cm-2025-04",
        "icd10cm-2026-04",
        "catalog-2026.1",
        "2024-10-01",
        "2025-09-30",
        "2026-09-30",
        "covers: FY2026: dates of service 2025-10-01 to 2026-09-30",
        "98,186",
        "illus.",
        "Sources:",
    ):
        assert text in result.output


def test_codes_list_fails_when_a_checksum_does_not_match(tables_dir: Path) -> None:
    mue = tables_dir / "bundling" / "bundling-2025.1" / "mue.csv"
    mue.write_text(mue.read_text(encoding="utf-8") + "85610,9,3,added by hand\n", encoding="utf-8")
    result = runner.invoke(app, ["codes", "list", "--dir", str(tables_dir)])
    assert result.exit_code == 1
    assert "MISMATCH" in result.output


def test_codes_import_prints_a_summary_and_writes_a_version(
    tables_dir: Path, tmp_path: Path
) -> None:
    source = tmp_path / "ptp.txt"
    source.write_text(PTP_TEXT, encoding="utf-8")
    result = runner.invoke(
        app,
        [
            "codes",
            "import",
            "ncci-ptp",
            str(source),
            "--dir",
            str(tables_dir),
            "--effective-from",
            "2026-10-01",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "rows read" in result.output
    assert "rows kept" in result.output
    assert "rejected line 4: date is not YYYYMMDD" in result.output
    assert "wrote bundling version bundling-2026-10-01" in result.output
    assert (tables_dir / "bundling" / "bundling-2026-10-01" / "manifest.toml").is_file()


def test_codes_import_refuses_an_unknown_kind(tables_dir: Path, tmp_path: Path) -> None:
    source = tmp_path / "x.csv"
    source.write_text("a,b\n", encoding="utf-8")
    result = runner.invoke(app, ["codes", "import", "loinc", str(source), "--dir", str(tables_dir)])
    assert result.exit_code == 2
    assert "KIND must be one of" in result.output


def test_codes_import_with_nothing_kept_exits_nonzero(tables_dir: Path, tmp_path: Path) -> None:
    source = tmp_path / "empty.txt"
    source.write_text("no rows\n", encoding="utf-8")
    result = runner.invoke(
        app, ["codes", "import", "ncci-ptp", str(source), "--dir", str(tables_dir)]
    )
    assert result.exit_code == 1
    assert "nothing written" in result.output


def test_codes_seal_recomputes_the_checksum(tables_dir: Path) -> None:
    folder = tables_dir / "catalog" / "catalog-2026.1"
    catalog = folder / "catalog.csv"
    shipped = catalog.read_text(encoding="utf-8")
    catalog.write_text(shipped + "ZN,,84630,Zinc,serum,,,,,\n", encoding="utf-8")
    result = runner.invoke(app, ["codes", "seal", str(folder)])
    assert result.exit_code == 0, result.output
    rows = shipped.count("\n")  # the heading line counts for the added row
    assert f"sealed catalog-2026.1: {rows} rows" in result.output
    listed = runner.invoke(app, ["codes", "list", "--dir", str(tables_dir)])
    assert listed.exit_code == 0


def test_codes_lookup_uses_the_release_in_force_on_the_date() -> None:
    args = ["codes", "lookup", "E11.A", "--dir", str(REPO / "code_tables")]
    in_2026 = runner.invoke(app, [*args, "--date", "2026-05-01"])
    in_2025 = runner.invoke(app, [*args, "--date", "2025-05-01"])
    assert in_2026.exit_code == 0
    assert "E11.A" in in_2026.output
    assert "icd10cm-2026-04" in in_2026.output
    assert in_2025.exit_code == 1
    assert "no test and no ICD-10-CM code or title matches" in in_2025.output


def test_codes_lookup_answers_cpt_hcpcs_loinc_and_local_test_codes() -> None:
    base = ["--dir", str(REPO / "code_tables"), "--date", "2026-05-01"]
    lipid = runner.invoke(app, ["codes", "lookup", "80061", *base])
    assert lipid.exit_code == 0, lipid.output
    assert "LIPID" in lipid.output
    assert "NCD 190.23" in lipid.output
    assert "components 82465 83718 84478" in lipid.output
    screening = runner.invoke(app, ["codes", "lookup", "G0103", *base])
    assert "PSASCR" in screening.output
    assert "screening billed as G0103" in screening.output
    by_loinc = runner.invoke(app, ["codes", "lookup", "4548-4", *base])
    assert "83036" in by_loinc.output


def test_codes_lookup_says_when_it_cut_a_list() -> None:
    args = ["codes", "lookup", "E11", "--dir", str(REPO / "code_tables"), "--date", "2026-05-01"]
    result = runner.invoke(app, [*args, "--limit", "5"])
    assert result.exit_code == 0, result.output
    rows = [line for line in result.output.splitlines() if line.startswith("  E11")]
    assert len(rows) == 5
    assert "5 of 117 shown; --limit 117 to see them all" in result.output
    everything = runner.invoke(app, [*args, "--limit", "117"])
    assert "shown;" not in everything.output


def test_codes_lookup_refuses_a_date_that_is_not_iso() -> None:
    result = runner.invoke(app, ["codes", "lookup", "E11", "--date", "05/01/2026"])
    assert result.exit_code == 2
    assert "'05/01/2026' is not a date: use YYYY-MM-DD" in result.output


def test_codes_lookup_with_no_match_exits_nonzero() -> None:
    result = runner.invoke(app, ["codes", "lookup", "zzqx", "--dir", str(REPO / "code_tables")])
    assert result.exit_code == 1
    assert "no test and no ICD-10-CM code or title matches" in result.output


def test_codes_import_payers_writes_a_coverage_version_with_the_payer_table(
    tables_dir: Path, tmp_path: Path
) -> None:
    from datetime import date

    from labintake.codes.tables import load_code_tables

    source = tmp_path / "payers.csv"
    source.write_text(
        "type,name,company_ids,plan_ids,names,source\n"
        "medicare,Medicare Part B,CMS;00431,,,senders\n"
        "medicare-advantage,Acme Medicare Advantage,ACME01,MAPD HMO-MA,,contract H0000\n"
        "commercial,Acme commercial,ACME01,,,\n"
        "bogus,Nobody,X1,,,\n"
        "medicaid,No ids,,,,\n",
        encoding="utf-8",
    )
    result = runner.invoke(
        app,
        [
            "codes", "import", "payers", str(source), "--dir", str(tables_dir),
            "--effective-from", "2026-07-01",
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "rows rejected" in result.output
    assert "unknown payer type" in result.output
    policies = load_code_tables(tables_dir).policies_for(date(2026, 7, 1))
    plan = policies.payers.plan_for("ACME01", "Acme", "MAPD")
    assert plan is not None
    assert plan.type == "medicare-advantage"
    assert policies.medicare_applies("ACME01", "Acme", "MAPD")
    assert not policies.medicare_applies("ACME01", "Acme", "PPO")  # the commercial plan
    assert policies.screening  # the rest of the coverage version is carried over
