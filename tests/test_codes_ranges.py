"""`labintake codes compress`: a transcribed code list written as the fewest exact codes,
families and ranges whose claim over the release's billable codes is the list itself."""

from __future__ import annotations

import random
from datetime import date
from pathlib import Path

import pytest
from typer.testing import CliRunner

from labintake.cli import app
from labintake.codes.ranges import billable_codes, compress, expand
from labintake.codes.tables import load_code_tables

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def billable() -> list[str]:
    release = load_code_tables(REPO / "code_tables").icd10_for(date(2026, 5, 1))
    assert release is not None
    return billable_codes(release)


def _diabetes(billable: list[str]) -> list[str]:
    return [c for c in billable if c[:3] in {"E08", "E09", "E10", "E11", "E13"}]


def test_every_diabetes_code_is_one_range(billable: list[str]) -> None:
    codes = _diabetes(billable)
    assert len(codes) > 400
    assert compress(codes, billable) == ["E08.00-E13.9"]
    assert expand(["E08.00-E13.9"], billable) == set(codes)


def test_a_gap_splits_the_range_around_the_missing_code(billable: list[str]) -> None:
    codes = [c for c in _diabetes(billable) if c != "E11.65"]
    patterns = compress(codes, billable)
    assert patterns == ["E08.00-E11.649", "E11.69-E13.9"]
    assert "E11.65" not in expand(patterns, billable)


def test_a_whole_subcategory_is_written_as_its_family(billable: list[str]) -> None:
    codes = [c for c in billable if c.startswith("E11.3")] + ["E11.9"]
    assert compress(codes, billable) == ["E11.3*", "E11.9"]


def test_headers_and_codes_outside_the_release_are_kept_exact(billable: list[str]) -> None:
    assert compress(["E11.3", "R73.01", "E11.9"], billable) == ["E11.9", "R73.01", "E11.3"]
    assert compress(["Z99.999"], billable) == ["Z99.999"]


def test_a_malformed_code_is_refused(billable: list[str]) -> None:
    with pytest.raises(ValueError, match=r"'250\.00' is not an ICD-10-CM code"):
        compress(["E11.9", "250.00"], billable)


def test_the_patterns_claim_exactly_any_list(billable: list[str]) -> None:
    rng = random.Random(20261207)
    region = billable[billable.index("D50.0") : billable.index("D50.0") + 400]
    for _ in range(40):
        chosen = {c for c in region if rng.random() < rng.choice((0.2, 0.6, 0.95))}
        assert expand(compress(chosen, billable), billable) == chosen


def test_the_command_prints_toml_list_lines(tmp_path: Path) -> None:
    listing = tmp_path / "list.txt"
    listing.write_text("E11.9, R73.01\nR73.02 R73.03\n", encoding="utf-8")
    result = CliRunner().invoke(
        app,
        [
            "codes",
            "compress",
            str(listing),
            "--date",
            "2026-05-01",
            "--dir",
            str(REPO / "code_tables"),
        ],
    )
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == [
        "# 4 codes as 2 patterns over icd10cm-2026-04",
        '  "E11.9",',
        '  "R73.01-R73.03",',
    ]
