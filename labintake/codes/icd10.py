"""ICD-10-CM releases as compact, read-only tables.

A release is compiled once (see `labintake.codes.build_icd10`) into a gzip'd TSV, one row per
code, sorted by code:

    code <TAB> flags <TAB> parent <TAB> excludes1 <TAB> description

`flags` holds `B` (billable: a leaf category/subcategory), `H` (header: a category or
subcategory with children), `7` (a 7th-character code, or a code lacking only its 7th
character) and `M` (a manifestation code of the etiology/manifestation convention, guideline
I.A.13: never reported without its underlying condition; tables built before the flag existed
lack it, so a title containing "in diseases classified elsewhere" counts too). `excludes1` is a
space-separated list of patterns in `CodeSet` syntax: exact codes (`E10.9`), dotted-prefix
wildcards (`E10.*`) and category ranges (`E08-E13`). Chapters and blocks are not codes and are
not in the table.

The whole file is kept as one string with a sorted code list and row offsets beside it, so a
release costs about its text size in memory and loads in a few tens of milliseconds. Entries are
built on demand.
"""

from __future__ import annotations

import bisect
import re
from array import array
from dataclasses import dataclass
from datetime import date
from functools import lru_cache
from itertools import pairwise

_STRIP = re.compile(r"[\s.]+")
_CODE_SHAPE = re.compile(r"^[A-Z][0-9][0-9A-Z]([0-9A-Z]{1,4})?$")


@lru_cache(maxsize=65_536)
def normalize_icd10(code: str) -> str:
    """Upper case, no whitespace, dotted after the category: ' e119 ' -> 'E11.9'.

    Works on anything; whether the result is a code at all is the release's business.
    Remembered: the rules normalise each diagnosis of each order several times over.
    """
    bare = _STRIP.sub("", code).upper()
    if len(bare) > 3:
        return f"{bare[:3]}.{bare[3:]}"
    return bare


def looks_like_icd10(code: str) -> bool:
    """True when the normalised text has the shape of an ICD-10-CM code (not whether it exists)."""
    return bool(_CODE_SHAPE.match(_STRIP.sub("", code).upper()))


@dataclass(frozen=True, slots=True)
class Icd10Entry:
    code: str
    description: str
    billable: bool
    header: bool  # a category or subcategory that has children
    # A 7th-character code (T36.0X1A), or a code that lacks only its 7th character (T36.0X1:
    # a header whose children are its 7th-character extensions; placeholder X fills gaps).
    seventh_char_required: bool
    excludes1: tuple[str, ...]  # CodeSet patterns: "E10.9", "E10.*", "E08-E13"
    parent: str | None
    manifestation: bool = False  # flag M, or the title says "in ... diseases classified elsewhere"

    @property
    def category(self) -> str:
        return self.code[:3]


MANIFESTATION_TITLE = re.compile(r"\bin (?:other )?diseases classified elsewhere\b", re.IGNORECASE)


def is_manifestation_title(description: str) -> bool:
    """Guideline I.A.13: most manifestation codes say "in diseases classified elsewhere"."""
    return bool(MANIFESTATION_TITLE.search(description))


def _parse_row(line: str) -> Icd10Entry:
    code, flags, parent, excludes, description = line.split("\t", 4)
    return Icd10Entry(
        code=code,
        description=description,
        billable="B" in flags,
        header="H" in flags,
        seventh_char_required="7" in flags,
        excludes1=tuple(excludes.split()) if excludes else (),
        parent=parent or None,
        manifestation="M" in flags or is_manifestation_title(description),
    )


class Icd10Release:
    """One ICD-10-CM release (e.g. `icd10cm-2026-04`), valid for dates of service in its window."""

    def __init__(
        self,
        version: str,
        effective_from: date,
        effective_to: date | None,
        text: str,
        *,
        release_date: date | None = None,
    ) -> None:
        self.version = version
        self.effective_from = effective_from
        self.effective_to = effective_to
        # When CMS made the content effective; before it, the window is an approximation
        # (an April update standing in for its fiscal year from October 1).
        self.release_date = release_date or effective_from
        self._text = text
        codes: list[str] = []
        offsets = array("I")
        position = 0
        length = len(text)
        find = text.find
        append_code = codes.append
        append_offset = offsets.append
        while position < length:
            end = find("\n", position)
            if end < 0:
                end = length
            if end > position:
                append_code(text[position : find("\t", position, end)])
                append_offset(position)
            position = end + 1
        offsets.append(length + 1)
        self._codes = codes
        self._offsets = offsets
        if any(a >= b for a, b in pairwise(codes)):
            raise ValueError(f"{version}: rows are not sorted by code or codes repeat")
        self._entry = lru_cache(maxsize=4096)(self._build_entry)
        self._ancestry = lru_cache(maxsize=4096)(self._build_ancestry)
        self._lower: str | None = None

    @classmethod
    def from_entries(
        cls,
        version: str,
        effective_from: date,
        effective_to: date | None,
        entries: list[Icd10Entry],
        *,
        release_date: date | None = None,
    ) -> Icd10Release:
        """An in-memory release (tests, small fixtures) built from entries in any order."""
        return cls(
            version, effective_from, effective_to, format_rows(entries), release_date=release_date
        )

    def covers(self, dos: date) -> bool:
        return self.effective_from <= dos and (
            self.effective_to is None or dos <= self.effective_to
        )

    def __len__(self) -> int:
        return len(self._codes)

    def __contains__(self, code: object) -> bool:
        return isinstance(code, str) and self._index(normalize_icd10(code)) is not None

    def __repr__(self) -> str:
        return f"Icd10Release({self.version!r}, {len(self)} codes)"

    def _index(self, normalized: str) -> int | None:
        i = bisect.bisect_left(self._codes, normalized)
        if i < len(self._codes) and self._codes[i] == normalized:
            return i
        return None

    def _row(self, index: int) -> str:
        return self._text[self._offsets[index] : self._offsets[index + 1] - 1].rstrip("\r\n")

    def _build_entry(self, index: int) -> Icd10Entry:
        return _parse_row(self._row(index))

    def get(self, code: str) -> Icd10Entry | None:
        index = self._index(normalize_icd10(code))
        return None if index is None else self._entry(index)

    def codes(self) -> list[str]:
        return list(self._codes)

    def descendants(self, code: str) -> list[Icd10Entry]:
        """Every code below `code` in the classification, in code order."""
        normalized = normalize_icd10(code)
        prefix = normalized + "." if len(normalized) == 3 else normalized
        start = bisect.bisect_left(self._codes, prefix)
        found: list[Icd10Entry] = []
        for i in range(start, len(self._codes)):
            candidate = self._codes[i]
            if not candidate.startswith(prefix):
                break
            if candidate != normalized:
                found.append(self._entry(i))
        return found

    def billable_children(self, code: str, limit: int = 50) -> list[Icd10Entry]:
        """Billable codes below a header code (reference for a coder; never chosen for them)."""
        return [entry for entry in self.descendants(code) if entry.billable][:limit]

    def ancestors(self, code: str) -> list[Icd10Entry]:
        """Parent, grandparent... up to the category."""
        return list(self._ancestry(code))

    def _build_ancestry(self, code: str) -> tuple[Icd10Entry, ...]:
        """`ancestors`, remembered per code (asked of every diagnosis of every order)."""
        chain: list[Icd10Entry] = []
        entry = self.get(code)
        while entry is not None and entry.parent:
            entry = self.get(entry.parent)
            if entry is not None:
                chain.append(entry)
        return tuple(chain)

    def excludes1_of(self, code: str) -> tuple[str, ...]:
        """Excludes1 patterns that apply to `code`: its own and those of its ancestors."""
        entry = self.get(code)
        if entry is None:
            return ()
        patterns = list(entry.excludes1)
        for ancestor in self.ancestors(code):
            patterns.extend(ancestor.excludes1)
        return tuple(dict.fromkeys(patterns))

    def excludes1_conflict(self, code_a: str, code_b: str) -> str | None:
        """The Excludes1 pattern that says `code_a` and `code_b` should not be coded together.

        Checked both ways (a note on either code or its ancestors); None when no note applies.
        """
        from labintake.codes.policies import CodeSet

        a, b = normalize_icd10(code_a), normalize_icd10(code_b)
        for this, other in ((a, b), (b, a)):
            for pattern in self.excludes1_of(this):
                if CodeSet.parse([pattern]).matches(other):
                    return pattern
        return None

    def search(self, text_or_code: str, limit: int = 25) -> list[Icd10Entry]:
        """Codes starting with the given code, else descriptions containing the words."""
        query = text_or_code.strip()
        if not query:
            return []
        if looks_like_icd10(query) or (len(query) <= 3 and query[:1].isalpha()):
            prefix = normalize_icd10(query)
            start = bisect.bisect_left(self._codes, prefix)
            hits: list[Icd10Entry] = []
            for i in range(start, len(self._codes)):
                if not self._codes[i].startswith(prefix) or len(hits) >= limit:
                    break
                hits.append(self._entry(i))
            if hits:
                return hits
        words = sorted({w for w in query.lower().split() if w}, key=len, reverse=True)
        lower = self._lowered()
        anchor = words[0]
        results: list[Icd10Entry] = []
        position = 0
        while len(results) < limit:
            found = lower.find(anchor, position)
            if found < 0:
                break
            index = bisect.bisect_right(self._offsets, found) - 1
            if index >= len(self._codes):
                break
            row_end = self._offsets[index + 1] - 1
            description = lower[self._offsets[index] : row_end].split("\t", 4)[-1]
            if all(word in description for word in words):
                results.append(self._entry(index))
            position = row_end + 1
        return results

    def _lowered(self) -> str:
        """Lower-case copy of the table for word search, made on first use (same offsets:
        every character in the table lower-cases to one character)."""
        if self._lower is None:
            lower = self._text.lower()
            if len(lower) != len(self._text):  # a character that lower-cases to several
                lower = "".join(c if len(c.lower()) != 1 else c.lower() for c in self._text)
            self._lower = lower
        return self._lower


def format_rows(entries: list[Icd10Entry]) -> str:
    """The TSV text of a release (sorted by code), as stored in `icd10cm.tsv.gz`."""
    lines = []
    for entry in sorted(entries, key=lambda e: e.code):
        flags = (
            ("B" if entry.billable else "")
            + ("H" if entry.header else "")
            + ("7" if entry.seventh_char_required else "")
            + ("M" if entry.manifestation else "")
        )
        description = entry.description.replace("\t", " ").replace("\n", " ")
        lines.append(
            f"{entry.code}\t{flags}\t{entry.parent or ''}\t{' '.join(entry.excludes1)}\t"
            f"{description}"
        )
    return "\n".join(lines) + "\n"
