"""`labintake codes lookup`: one box for any code a coder meets on an order.

A query is looked up as a test (the lab's local code, a CPT/HCPCS code, a LOINC order code,
or words of a test's name, in the catalog with its MUE limit and panel components) and as an
ICD-10-CM code or words, in the release in force on the date of service. Each list is cut at
`limit` rows and says so ("25 of 213 shown").
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from labintake.codes.catalog import CatalogEntry
    from labintake.codes.icd10 import Icd10Release
    from labintake.codes.tables import CodeTables

# Enough to count every hit of a prefix or a word in a release (about 98,000 codes).
_COUNT_ALL = 1_000_000


@dataclass(frozen=True, slots=True)
class LookupSection:
    title: str
    rows: list[str]
    total: int
    note: str = ""


def parse_day(value: str | None) -> date | None:
    """An ISO date (2026-05-01), or None; ValueError naming the expected form otherwise."""
    if value is None or not value.strip():
        return None
    try:
        return date.fromisoformat(value.strip())
    except ValueError:
        raise ValueError(f"{value!r} is not a date: use YYYY-MM-DD, e.g. 2026-05-01") from None


def _test_matches(entry: CatalogEntry, query: str) -> bool:
    wanted = query.strip().upper()
    codes = {entry.code.upper(), entry.cpt.upper(), (entry.loinc or "").upper()}
    if entry.screening_cpt:
        codes.add(entry.screening_cpt.upper())
    if wanted in codes:
        return True
    words = wanted.lower().split()
    return bool(words) and all(w in entry.description.lower() for w in words)


def _test_row(entry: CatalogEntry, tables: CodeTables, day: date) -> str:
    bundling = tables.bundling_for(day)
    parts = [f"{entry.code:<10} {entry.cpt:<6} {entry.loinc or '-':<8} {entry.description}"]
    policy = f"NCD {entry.ncd}" if entry.ncd else f"LCD {entry.lcd}" if entry.lcd else ""
    if policy:
        parts.append(policy)
    if entry.screening_cpt:
        parts.append(f"screening billed as {entry.screening_cpt}")
    limit = bundling.mue(entry.cpt)
    if limit is not None:
        parts.append(f"MUE {limit.units} (MAI {limit.mai})")
    if entry.components:
        parts.append("components " + " ".join(entry.components))
    if entry.medicare_parts:
        parts.append("Medicare: report " + " + ".join(entry.medicare_parts))
    return "; ".join(parts)


def _release_for(tables: CodeTables, day: date) -> tuple[Icd10Release | None, str]:
    """The release verification uses on `day` (see `labintake.codes.release_choice`)."""
    choice = tables.icd10_choice(day)
    release = choice.release
    if release is None:
        return None, "no ICD-10-CM release is loaded"
    if choice.covered:
        return release, ""
    return release, (
        f"no loaded ICD-10-CM release covers {day}; shown from the newest, {release.version} "
        "(load the release in force with `labintake codes import icd10cm`)"
    )


def lookup(tables: CodeTables, query: str, day: date, limit: int = 25) -> list[LookupSection]:
    """The sections with hits (tests, then ICD-10-CM); empty when nothing matches."""
    sections: list[LookupSection] = []
    tests = [e for e in tables.catalog if _test_matches(e, query)]
    if tests:
        sections.append(
            LookupSection(
                f"Tests ({tables.catalog.version})",
                [_test_row(e, tables, day) for e in tests[:limit]],
                len(tests),
            )
        )
    release, note = _release_for(tables, day)
    if release is not None:
        hits = release.search(query, limit=_COUNT_ALL)
        rows = []
        for entry in hits[:limit]:
            flags = "billable" if entry.billable else "header" if entry.header else ""
            rows.append(f"{entry.code:<9} {flags:<9} {entry.description}")
        if rows:
            sections.append(
                LookupSection(
                    f"ICD-10-CM ({release.version}, for {day})", rows, len(hits), note=note
                )
            )
    return sections


def render(sections: list[LookupSection], limit: int) -> list[str]:
    lines: list[str] = []
    for section in sections:
        lines.append(section.title)
        if section.note:
            lines.append(f"  note: {section.note}")
        lines.extend(f"  {row}" for row in section.rows)
        if section.total > len(section.rows):
            lines.append(
                f"  {len(section.rows)} of {section.total:,} shown; --limit {section.total} "
                "to see them all"
            )
    return lines
