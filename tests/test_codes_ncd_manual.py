"""The NCD code-list importer reading the CMS NCD Coding Policy Manual (ICD-10-CM) as text.

The sample is synthetic and short, written in the manual's published layout (title page with
its edition, table of contents with dot leaders, the all-NCD non-covered list, one section per
NCD with its HCPCS table, covered and does-not-support tables, prose sections, running heads
and footers, `*` change marks, a row whose description sits on the next line, a range row).
"""

from __future__ import annotations

import shutil
import tomllib
from datetime import date
from pathlib import Path

import pytest
from typer.testing import CliRunner

from labintake.cli import app
from labintake.codes.importers import read_ncd
from labintake.codes.importing import edition_start, import_file
from labintake.codes.manifest import discover, read_manifest
from labintake.codes.ncd_manual import looks_like_manual, read_manual_text
from labintake.codes.tables import load_code_tables
from labintake.codes.versions import seal

REPO = Path(__file__).resolve().parent.parent

MANUAL = """\
Medicare National Coverage Determinations (NCD) Coding Policy Manual and Change Report (ICD-10-CM)
*October 2026 Changes ICD-10-CM Version - Red
Clinical Diagnostic Laboratory Services
Fu Associates, Ltd.

Table of Contents
NCD Manual Changes .............................................................. ii
Non-covered ICD-10-CM Codes for All Lab NCDs ...................................... 5
190.23 - Lipids Testing ......................................................... 98
190.31 - Prostate Specific Antigen ............................................. 140

Non-covered ICD-10-CM Codes for All Lab NCDs
Code Description
R99 Ill-defined and unknown cause of mortality
Z00.00 Encounter for general adult medical examination without abnormal findings
Reasons for Denial for All NCDs
Note: This section was created to simplify the NCD manual.

Medicare National Coverage Determinations (NCD) Coding Policy Manual and Change Report (ICD-10-CM)
190.23 - Lipids Testing
Description
Lipoproteins are a class of heterogeneous particles containing lipid and protein.
HCPCS Codes (Alphanumeric, CPT AMA)
Code Description
80061 Lipid panel
82465 Cholesterol, serum or whole blood, total
ICD-10-CM Codes Covered by Medicare Program
The ICD-10-CM codes in the table below can be viewed on CMS' website as part of
Downloads: Lab Code List, at http://www.cms.gov/Medicare/Coverage/CoverageGenInfo/LabNCDsICD10.html
Code Description
E78.00 Pure hypercholesterolemia, unspecified
*E78.01 Familial hypercholesterolemia
E78.5 Hyperlipidemia, unspecified
NCD 190.23 *October 2026 Changes ICD-10-CM Version - Red Fu Associates, Ltd. October 2026 99
Medicare National Coverage Determinations (NCD) Coding Policy Manual and Change Report (ICD-10-CM)
Code Description
I25.10 Atherosclerotic heart disease of native coronary artery without angina
pectoris
E11.00-E11.9 Type 2 diabetes mellitus
Indications
The medical community recognizes lipid testing as appropriate for evaluating
E78.5 appears in prose here but is not a row of any list.
Limitations
Lipid panel monitoring may be reasonable annually.
ICD-10-CM Codes That Do Not Support Medical Necessity
Code Description
Z13.220 Encounter for screening for lipoid disorders
Sources of Information
None.

190.31 - Prostate Specific Antigen
Other Names/Abbreviations
Total PSA
HCPCS Codes (Alphanumeric, CPT AMA)
Code
Description
84153
Prostate Specific Antigen (PSA), total
ICD-10-CM Codes Covered by Medicare Program
Code
Description
C61
Malignant neoplasm of prostate
R97.20
Elevated prostate specific antigen [PSA]
ICD-10-CM Codes Denied
Code Description
Z12.5 Encounter for screening for malignant neoplasm of prostate
Coding Guidelines
1. Any of the codes listed above may be reported.
"""


def test_manual_text_is_recognised_and_the_csv_is_not() -> None:
    assert looks_like_manual(MANUAL)
    assert not looks_like_manual("ncd,list,code\n190.23,covered,E78.5\n")
    assert read_ncd(MANUAL).layout == "cms-ncd-coding-policy-manual"
    assert read_ncd("ncd,list,code\n190.23,covered,E78.5\n").layout == "ncd-csv"


def test_manual_sections_give_each_ncd_its_three_lists() -> None:
    manual = read_manual_text(MANUAL)
    assert manual.problems == []
    assert manual.edition == "October 2026"
    assert manual.titles == {"190.23": "Lipids Testing", "190.31": "Prostate Specific Antigen"}
    assert manual.lists["190.23"] == {
        "hcpcs": ["80061", "82465"],
        "covered": ["E78.00", "E78.01", "E78.5", "I25.10", "E11.00-E11.9"],
        "not_covered": ["Z13.220"],
    }
    assert manual.lists["190.31"] == {
        "hcpcs": ["84153"],
        "covered": ["C61", "R97.20"],
        "not_covered": ["Z12.5"],
    }
    # The all-NCD non-covered list is read but not imported into any one NCD.
    assert manual.global_codes == 2
    assert manual.rows_read == 14


def test_icd9_edition_and_unknown_text_are_refused_with_a_reason() -> None:
    icd9 = "190.23 - Lipids Testing\nICD-9-CM Codes Covered by Medicare Program\n272.0 Pure\n"
    manual = read_manual_text(icd9)
    assert [p.reason for p in manual.problems] == [
        "ICD-9-CM edition: this is the ICD-9-CM manual, not the ICD-10-CM one"
    ]
    result = read_ncd("just some text\nwith nothing in it\n")
    assert result.kept == 0
    assert "unknown NCD file layout" in result.rejected[0].reason


def test_wrong_kind_of_code_in_a_list_is_rejected_with_its_line() -> None:
    text = MANUAL.replace("E78.5 Hyperlipidemia, unspecified", "83721 LDL in the wrong table")
    manual = read_manual_text(text)
    assert len(manual.problems) == 1
    problem = manual.problems[0]
    assert problem.reason == "code of the wrong kind for its list: 83721 in covered"
    assert text.splitlines()[problem.line - 1].startswith("83721")


def test_edition_gives_the_quarter_the_import_takes_effect() -> None:
    assert edition_start("October 2026") == date(2026, 10, 1)
    assert edition_start("April 2025") == date(2025, 4, 1)
    assert edition_start("") is None
    assert edition_start("Spring 2025") is None


@pytest.fixture
def tables_dir(tmp_path: Path) -> Path:
    target = tmp_path / "code_tables"
    for kind in ("catalog", "coverage", "bundling"):
        shutil.copytree(REPO / "code_tables" / kind, target / kind)
    return target


def test_importing_the_manual_writes_a_stamped_coverage_version_in_force_from_its_quarter(
    tables_dir: Path, tmp_path: Path
) -> None:
    source = tmp_path / "NCD_manual_Oct2026.txt"
    source.write_text(MANUAL, encoding="utf-8")
    outcome = import_file(
        "ncd", source, tables_dir, invoked_by="labintake codes import ncd (by tester)"
    )
    written = outcome.written
    assert written is not None
    assert written.effective_from == date(2026, 10, 1)  # from "October 2026 Changes"
    assert "October 2026 edition" in written.source
    stamp = written.imported
    assert stamp is not None
    assert stamp.file == "NCD_manual_Oct2026.txt"
    assert stamp.sha256.startswith("sha256:")
    assert len(stamp.sha256) == len("sha256:") + 64
    assert stamp.by == "labintake codes import ncd (by tester)"
    assert stamp.layout == "cms-ncd-coding-policy-manual"
    assert stamp.edition == "October 2026"
    assert (stamp.rows_read, stamp.rows_kept, stamp.rows_skipped, stamp.rows_rejected) == (
        14,
        12,
        2,
        0,
    )
    policies = load_code_tables(tables_dir).policies_for(date(2026, 10, 1))
    lipids = policies.ncd("190.23")
    assert lipids is not None
    assert lipids.cpts == ("80061", "82465")
    assert lipids.complete
    assert lipids.supports("E11.65")  # the range row
    assert not lipids.supports("Z13.220")
    assert not lipids.supports("I63.9")  # the imported list replaces the transcribed one
    psa = policies.ncd("190.31")
    assert psa is not None
    assert psa.supports("R97.20")
    assert not psa.supports("Z12.5")
    ggt = policies.ncd("190.32")  # not in the file: kept as it was
    assert ggt is not None
    assert not ggt.complete


def test_the_stamp_survives_sealing_and_is_plain_toml(tables_dir: Path, tmp_path: Path) -> None:
    source = tmp_path / "manual.txt"
    source.write_text(MANUAL, encoding="utf-8")
    written = import_file("ncd", source, tables_dir).written
    assert written is not None
    assert written.folder is not None
    data = tomllib.loads((written.folder / "manifest.toml").read_text(encoding="utf-8"))
    assert data["imported_file"] == "manual.txt"
    assert data["imported_rows"] == [14, 12, 2, 0]
    assert data["imported_by"] == "labintake codes import ncd manual.txt"
    resealed = seal(written.folder)
    assert resealed.imported == written.imported
    assert read_manifest(written.folder).imported == written.imported


def test_import_command_records_the_command_and_codes_list_shows_the_stamp(
    tables_dir: Path, tmp_path: Path
) -> None:
    source = tmp_path / "manual.txt"
    source.write_text(MANUAL, encoding="utf-8")
    runner = CliRunner()
    result = runner.invoke(
        app,
        ["codes", "import", "ncd", str(source), "--version", "coverage-2026.10", "--dir",
         str(tables_dir)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "cms-ncd-coding-policy-manual, October 2026 edition" in result.output
    written = next(m for m in discover(tables_dir) if m.version == "coverage-2026.10")
    assert written.imported is not None
    assert written.imported.by.startswith(
        "labintake codes import ncd manual.txt --version coverage-2026.10 (by "
    )
    listing = runner.invoke(
        app, ["codes", "list", "--dir", str(tables_dir)], env={"COLUMNS": "400"}
    )
    assert listing.exit_code == 0, listing.output
    assert "imported manual.txt (sha256:" in listing.output
    assert "rows read 14, kept 12, skipped 2, rejected 0" in listing.output


INVERTED = """\
190.15 - Blood Counts
HCPCS Codes (Alphanumeric, CPT AMA)
Code Description
85025 Blood count; complete (CBC), automated and automated differential WBC count
ICD-10-CM Codes Covered by Medicare Program
Any ICD-10-CM code not listed in either of the ICD-10-CM sections below.
ICD-10-CM Codes That Do Not Support Medical Necessity
Code Description
Z01.810 Encounter for preprocedural cardiovascular examination
"""


def test_any_code_not_listed_under_covered_marks_an_inverted_policy(
    tables_dir: Path, tmp_path: Path
) -> None:
    manual = read_manual_text(INVERTED)
    assert manual.inverted == {"190.15"}
    assert manual.lists["190.15"]["covered"] == []
    base = tables_dir / "coverage" / "coverage-2026.4"
    (base / "ncd-190.15.toml").unlink()  # so that the import writes the policy file itself
    manifest = base / "manifest.toml"
    manifest.write_text(
        manifest.read_text(encoding="utf-8").replace('"ncd-190.15.toml", ', ""), encoding="utf-8"
    )
    seal(base)
    source = tmp_path / "cbc.txt"
    source.write_text(INVERTED, encoding="utf-8")
    assert import_file("ncd", source, tables_dir, effective_from=date(2026, 10, 1)).written
    counts = load_code_tables(tables_dir).policies_for(date(2026, 10, 1)).ncd("190.15")
    assert counts is not None
    assert counts.inverted
    assert counts.supports("R53.83")
    assert not counts.supports("Z01.810")
