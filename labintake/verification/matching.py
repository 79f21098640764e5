"""Memoised code-list lookups for the rules (the same few diagnoses are checked against the same
lists over and over; the answers never change while the tables are loaded).

Keys hold the CodeSet or release object itself (identity), so an answer can never be served
for another table version. The memos are bounded and simply start over when full.
"""

from __future__ import annotations

from labintake.codes.icd10 import Icd10Release
from labintake.codes.policies import CodeSet

_LIMIT = 200_000
_matches: dict[tuple[CodeSet, str], bool] = {}
_excludes: dict[tuple[Icd10Release, str], CodeSet] = {}


def code_in(code_set: CodeSet, code: str) -> bool:
    """`code_set.matches(code)`, remembered."""
    key = (code_set, code)
    found = _matches.get(key)
    if found is None:
        if len(_matches) >= _LIMIT:
            _matches.clear()
        found = _matches[key] = code_set.matches(code)
    return found


def excludes1_set(release: Icd10Release, code: str) -> CodeSet:
    """The Excludes1 notes that apply to `code` (its own and its ancestors'), as a CodeSet."""
    key = (release, code)
    found = _excludes.get(key)
    if found is None:
        if len(_excludes) >= _LIMIT:
            _excludes.clear()
        found = _excludes[key] = CodeSet.parse(release.excludes1_of(code))
    return found


def excludes1_pair(release: Icd10Release, first: str, second: str) -> bool:
    return code_in(excludes1_set(release, first), second) or code_in(
        excludes1_set(release, second), first
    )
