"""The diagnosis-edit table (sex and age edits as data) and the bundling files' `confirmed`
column: read, refused when malformed, and the shipped versions load."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from labintake.codes.bundling import (
    MueLimit,
    PtpEdit,
    format_mue_csv,
    format_ptp_tsv,
    read_mue_csv,
    read_ptp_tsv,
)
from labintake.codes.dx_edits import age_on, read_dx_edits_toml
from labintake.codes.tables import load_code_tables

REPO = Path(__file__).resolve().parent.parent

EDITS = """
[[sex]]
name = "female genital organs"
sex = "F"
codes = ["N70-N98", "O00-O9A"]
source = "ICD-10-CM block titles"

[[age]]
name = "maternity"
min_age = 9
max_age = 64
codes = ["O00-O9A"]
source = "MCE age conflict"
"""


def test_sex_and_age_edits_match_codes_by_pattern() -> None:
    edits = read_dx_edits_toml(EDITS, "t", "edits.toml")
    assert len(edits) == 2
    assert edits.sex_conflict("O9A.211", "M") is not None  # O9A sorts after O99
    assert edits.sex_conflict("n80.0", "male") is not None
    assert edits.sex_conflict("N80.0", "F") is None
    assert edits.sex_conflict("N80.0", "U") is None  # unknown sex is never a conflict
    assert edits.sex_conflict("E11.9", "M") is None
    maternity = edits.age_conflict("O24.410", 65)
    assert maternity is not None
    assert maternity.name == "maternity"
    assert edits.age_conflict("O24.410", 64) is None
    assert edits.age_conflict("O24.410", 9) is None


def test_an_edit_asked_again_for_another_patient_answers_for_that_patient() -> None:
    """The edits a code matches are remembered per code; the patient's sex and age are not."""
    edits = read_dx_edits_toml(EDITS, "t", "edits.toml")
    assert edits.sex_conflict("N80.0", "F") is None
    conflict = edits.sex_conflict("N80.0", "M")
    assert conflict is not None
    assert conflict.name == "female genital organs"
    assert edits.sex_conflict("N80.0", "F") is None
    assert edits.age_conflict("O24.410", 30) is None
    assert edits.age_conflict("O24.410", 70) is not None
    assert edits.age_conflict("E11.9", 70) is None


def test_age_counts_completed_years() -> None:
    assert age_on(date(2000, 5, 12), date(2026, 5, 11)) == 25
    assert age_on(date(2000, 5, 12), date(2026, 5, 12)) == 26


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ('[[sex]]\nname = "x"\nsex = "Q"\ncodes = ["N80"]\nsource = "s"', "sex must be F or M"),
        ('[[sex]]\nname = "x"\nsex = "F"\ncodes = ["N80"]', "names its source"),
        ('[[age]]\nname = "x"\nmin_age = 9\nmax_age = 3\ncodes = ["O00"]\nsource = "s"', "min"),
        ('[[age]]\nname = "x"\nmin_age = 0\nmax_age = 1\ncodes = ["bad!"]\nsource = "s"', "bad!"),
        ('[[age]]\nname = "x"\nmin_age = 0\nmax_age = 1\ncodes = []\nsource = "s"', "non-empty"),
    ],
)
def test_a_malformed_edit_is_refused_with_its_place(text: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        read_dx_edits_toml(text, "t", "edits.toml")


def test_the_shipped_edits_load_and_apply_by_date_of_service() -> None:
    tables = load_code_tables(REPO / "code_tables")
    edits = tables.dx_edits_for(date(2026, 5, 1))
    assert edits.version == "dxedits-2026.1"
    assert edits.sex_conflict("Z12.5", "F") is not None
    assert edits.sex_conflict("Z12.4", "M") is not None
    assert edits.age_conflict("Z00.121", 40) is not None
    assert edits.age_conflict("Z00.00", 10) is not None
    assert all(e.source for e in (*edits.sex_edits, *edits.age_edits))


def test_bundling_rows_say_whether_they_were_confirmed() -> None:
    edits = [PtpEdit("80053", "80048", "0", date(1996, 1, 1), None, "r", confirmed=False)]
    text = format_ptp_tsv(edits)
    assert text.splitlines()[1].endswith("\tno")
    assert read_ptp_tsv(text, "ptp.tsv") == edits
    limits = [MueLimit("80053", 1, 2, "r", confirmed=False), MueLimit("84443", 4, 3, "")]
    assert read_mue_csv(format_mue_csv(limits), "mue.csv") == limits


def test_bundling_files_written_before_the_confirmed_column_read_as_imported() -> None:
    old = "column1\tcolumn2\tmodifier_indicator\teffective\tdeleted\trationale\n"
    edits = read_ptp_tsv(old + "80053\t80048\t0\t1996-01-01\t\tr\n", "ptp.tsv")
    assert edits[0].confirmed is True
    limits = read_mue_csv("cpt,units,mai,rationale\n80053,1,2,r\n", "mue.csv")
    assert limits[0].confirmed is True
    with pytest.raises(ValueError, match="confirmed must be yes or no"):
        read_mue_csv("cpt,units,mai,rationale,confirmed\n80053,1,2,r,maybe\n", "mue.csv")


def test_every_shipped_hand_entered_bundling_row_is_marked() -> None:
    folder = REPO / "code_tables" / "bundling" / "bundling-2025.1"
    edits = read_ptp_tsv((folder / "ptp.tsv").read_text(encoding="utf-8"), "ptp.tsv")
    limits = read_mue_csv((folder / "mue.csv").read_text(encoding="utf-8"), "mue.csv")
    assert edits
    assert limits
    unconfirmed = [e for e in edits if not e.confirmed] + [m for m in limits if not m.confirmed]
    assert all("not" in row.rationale for row in unconfirmed)
    assert ("81001", "81003") in {(e.column1, e.column2) for e in edits}
