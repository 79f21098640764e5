"""ICD-10-CM releases as shipped: billable/header flags, 7th characters, Excludes1, dates."""

from __future__ import annotations

from dataclasses import replace
from datetime import date
from pathlib import Path

import pytest

from labintake.codes.icd10 import (
    Icd10Entry,
    Icd10Release,
    format_rows,
    looks_like_icd10,
    normalize_icd10,
)
from labintake.codes.tables import CodeTables, load_code_tables

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def tables() -> CodeTables:
    return load_code_tables(REPO / "code_tables")


@pytest.fixture(scope="module")
def r2026(tables: CodeTables) -> Icd10Release:
    release = tables.icd10_version("icd10cm-2026-04")
    assert release is not None
    return release


@pytest.fixture(scope="module")
def r2025(tables: CodeTables) -> Icd10Release:
    release = tables.icd10_version("icd10cm-2025-04")
    assert release is not None
    return release


@pytest.mark.parametrize(
    ("written", "normalized"),
    [
        ("e119", "E11.9"),
        (" E11.9 ", "E11.9"),
        ("e 11. 65", "E11.65"),
        ("t360x1a", "T36.0X1A"),
        ("E11", "E11"),
        ("z00.00\t", "Z00.00"),
    ],
)
def test_normalize_icd10_uppercases_strips_and_dots_after_category(
    written: str, normalized: str
) -> None:
    assert normalize_icd10(written) == normalized


def test_looks_like_icd10_accepts_code_shapes_and_refuses_others() -> None:
    assert looks_like_icd10("e11.9")
    assert looks_like_icd10("T36.0X1A")
    assert not looks_like_icd10("80061")
    assert not looks_like_icd10("E11.91234")
    assert not looks_like_icd10("")


def test_leaf_subcategory_is_billable_and_its_category_is_a_header(r2026: Icd10Release) -> None:
    e119 = r2026.get("E11.9")
    e11 = r2026.get("e11")
    assert e119 is not None
    assert e11 is not None
    assert e119.billable
    assert not e119.header
    assert e119.parent == "E11"
    assert e11.header
    assert not e11.billable
    assert e119.description == "Type 2 diabetes mellitus without complications"


def test_blocks_and_chapters_are_not_codes(r2026: Icd10Release) -> None:
    assert r2026.get("E08-E13") is None
    assert "E08-E13" not in r2026
    assert r2026.get("4") is None


def test_seventh_character_codes_need_their_seventh_character(r2026: Icd10Release) -> None:
    full = r2026.get("T36.0X1A")
    short = r2026.get("T360X1")
    assert full is not None
    assert short is not None
    assert full.billable
    assert full.seventh_char_required
    assert short.header
    assert not short.billable
    assert short.seventh_char_required
    assert [c.code for c in r2026.billable_children("T36.0X1")] == [
        "T36.0X1A",
        "T36.0X1D",
        "T36.0X1S",
    ]
    assert r2026.get("T36.01A") is None  # placeholder X missing: not a code


def test_e11a_exists_in_the_2026_release_only(r2025: Icd10Release, r2026: Icd10Release) -> None:
    assert "E11.A" in r2026
    entry = r2026.get("E11.A")
    assert entry is not None
    assert entry.billable
    assert "E11.A" not in r2025
    assert r2025.get("E11.9") is not None


def test_release_sizes_match_the_upstream_change_between_april_2025_and_2026(
    r2025: Icd10Release, r2026: Icd10Release
) -> None:
    old, new = set(r2025.codes()), set(r2026.codes())
    assert len(r2025) > 97_000
    assert len(r2026) > 98_000
    added, removed = new - old, old - new
    # the April 2026 release added 615 entries and removed 12 (chapters/blocks included)
    assert 590 <= len(added) <= 615
    assert 1 <= len(removed) <= 12


def test_release_in_force_is_chosen_by_fiscal_year(tables: CodeTables) -> None:
    """Each April update stands for its fiscal year, October 1 to September 30."""

    def version(day: date) -> str | None:
        release = tables.icd10_for(day)
        return release.version if release is not None else None

    assert version(date(2024, 10, 1)) == "icd10cm-2025-04"
    assert version(date(2025, 4, 1)) == "icd10cm-2025-04"
    assert version(date(2025, 9, 30)) == "icd10cm-2025-04"
    assert version(date(2025, 10, 1)) == "icd10cm-2026-04"
    assert version(date(2026, 3, 31)) == "icd10cm-2026-04"
    assert version(date(2026, 9, 30)) == "icd10cm-2026-04"
    # nothing loaded covers FY2027 nor dates before FY2025: the newest, marked out of date
    assert version(date(2026, 10, 1)) is None
    assert version(date(2024, 9, 30)) is None
    for day, why in ((date(2026, 10, 1), "after"), (date(2024, 9, 30), "before")):
        choice = tables.icd10_choice(day)
        assert choice.release is not None
        assert (choice.release.version, choice.covered, choice.why) == (
            "icd10cm-2026-04",
            False,
            why,
        )


def test_fy2026_codes_apply_from_october_2025(tables: CodeTables) -> None:
    release = tables.icd10_for(date(2025, 11, 3))
    assert release is not None
    e11a = release.get("E11.A")
    assert e11a is not None
    assert e11a.billable
    # E78.01 became a header in FY2026 (expanded to E78.010-E78.019)
    e7801 = release.get("E78.01")
    assert e7801 is not None
    assert not e7801.billable


def test_excludes1_patterns_are_compiled_from_the_notes(r2026: Icd10Release) -> None:
    e11 = r2026.get("E11")
    assert e11 is not None
    assert "E10.*" in e11.excludes1
    assert "O24.4*" in e11.excludes1
    assert "P70.2" in e11.excludes1


def test_excludes1_conflict_is_found_through_ancestors_both_ways(r2026: Icd10Release) -> None:
    assert r2026.excludes1_conflict("E11.9", "E10.9") == "E10.*"
    assert r2026.excludes1_conflict("E10.9", "E11.9") is not None
    assert r2026.excludes1_conflict("E11.9", "E78.5") is None
    # E11.A (in remission) excludes the other E11 codes
    assert r2026.excludes1_conflict("E11.A", "E11.65") is not None


def test_billable_children_lists_only_billable_descendants(r2026: Icd10Release) -> None:
    children = r2026.billable_children("E11", limit=500)
    assert children
    assert all(c.billable and c.code.startswith("E11.") for c in children)
    assert "E11.9" in {c.code for c in children}
    assert len(r2026.billable_children("E11", limit=5)) == 5


def test_search_finds_codes_by_prefix_and_by_words(r2026: Icd10Release) -> None:
    by_code = r2026.search("e11.6", limit=50)
    assert by_code
    assert all(e.code.startswith("E11.6") for e in by_code)
    by_words = r2026.search("hyperlipidemia unspecified")
    assert "E78.5" in {e.code for e in by_words}
    assert r2026.search("") == []


def test_in_memory_release_from_entries_behaves_like_a_loaded_one() -> None:
    release = Icd10Release.from_entries(
        "icd10cm-test",
        date(2026, 4, 1),
        None,
        [
            Icd10Entry("E11.9", "Type 2 diabetes, no complications", True, False, False, (), "E11"),
            Icd10Entry("E11", "Type 2 diabetes", False, True, False, ("E10.*",), None),
            Icd10Entry("E10.9", "Type 1 diabetes, no complications", True, False, False, (), None),
        ],
    )
    assert len(release) == 3
    assert release.get("e119") == Icd10Entry(
        "E11.9", "Type 2 diabetes, no complications", True, False, False, (), "E11"
    )
    assert release.excludes1_conflict("E10.9", "E11.9") == "E10.*"
    assert release.covers(date(2026, 4, 1))
    assert not release.covers(date(2026, 3, 31))


def test_unsorted_rows_are_refused() -> None:
    with pytest.raises(ValueError, match="not sorted"):
        Icd10Release("bad", date(2026, 1, 1), None, "E11.9\tB\tE11\t\tx\nE11\tH\t\t\ty\n")


def test_excludes1_notes_are_reduced_to_code_patterns() -> None:
    from labintake.codes.build_icd10 import excludes_patterns

    notes = [
        "type 1 diabetes mellitus (E10.-)",
        "gestational diabetes (O24.4-)",
        "diabetes mellitus due to underlying condition (E08.-, E09.-)",
        "neonatal diabetes mellitus (P70.2)",
        "malignant neoplasms (C00-C96)",
        "postprocedural hypoglycemia (E16.0)",
        "see notes (not a code) and (E16)",
    ]
    assert excludes_patterns(notes, {"E16": True, "E16.0": False}) == (
        "E10.*",
        "O24.4*",
        "E08.*",
        "E09.*",
        "P70.2",
        "C00-C96",
        "E16.0",
        "E16.*",
    )


def test_manifestation_flag_round_trips_and_titles_count_without_it() -> None:
    flagged = Icd10Entry("D63.1", "Anemia in chronic kidney disease", True, False, False, (), "D63")
    text = "D63.1\tBM\tD63\t\tAnemia in chronic kidney disease\n" + (
        "G63\tB\t\t\tPolyneuropathy in diseases classified elsewhere\n"
    )
    release = Icd10Release("icd10cm-test", date(2026, 4, 1), None, text)
    d631 = release.get("D63.1")
    assert d631 is not None
    assert d631.manifestation  # flag M
    g63 = release.get("G63")
    assert g63 is not None
    assert g63.manifestation  # a table without the flag: the title says so
    assert format_rows([replace(flagged, manifestation=True)]).split("\t")[1] == "BM"
    assert format_rows([flagged]).split("\t")[1] == "B"


def test_shipped_releases_mark_manifestation_codes_by_title(r2026: Icd10Release) -> None:
    g63 = r2026.get("G63")
    assert g63 is not None
    assert g63.manifestation
    e11 = r2026.get("E11.42")
    assert e11 is not None
    assert not e11.manifestation
