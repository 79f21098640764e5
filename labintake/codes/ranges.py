"""Writing a transcribed list of ICD-10-CM codes as the fewest patterns that claim exactly it.

A coverage list published code by code (the CMS lab NCD lists run to hundreds of codes) is
easier to read and review as ranges and families: `compress` turns the codes into exact codes,
families (`E11.*`, `E11.3*`) and ranges (`E08.00-E13.9`) whose claim, over the billable codes
of an ICD-10-CM release, is the list and nothing else; `expand` gives that claim back, so the
two can be compared. Non-billable header codes are neither claimed nor refused (no list names
them and no order may carry them); a listed code the release does not hold (deleted, or not yet
in it) is kept as an exact code.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable

from labintake.codes.icd10 import Icd10Release, normalize_icd10
from labintake.codes.policies import CodeSet


def _bare(code: str) -> str:
    return code.replace(".", "").strip().upper()


def billable_codes(release: Icd10Release) -> list[str]:
    """The release's billable codes, in its (ASCII) order, dotted."""
    found = []
    for code in release.codes():
        entry = release.get(code)
        if entry is not None and entry.billable:
            found.append(code)
    return found


def expand(patterns: Iterable[str], billable: list[str]) -> set[str]:
    """The billable codes (dotted, in the release's order) that the patterns claim.

    Each pattern claims a contiguous run of the ordered codes, found by bisection and walked
    with `CodeSet.matches`, so the answer is the matcher's own."""
    bare = [_bare(c) for c in billable]
    claimed: set[str] = set()
    for pattern in patterns:
        code_set = CodeSet.parse([pattern])
        first = pattern.split("-")[0] if "*" not in pattern else pattern
        start = bisect.bisect_left(bare, _bare(first.rstrip("*-").removesuffix(".")))
        for index in range(start, len(billable)):
            if not code_set.matches(billable[index]):
                break
            claimed.add(billable[index])
    return claimed


def _family(run: list[str], billable_bare: list[str], start: int, end: int) -> str | None:
    """A prefix pattern claiming exactly billable[start:end] (the run), if there is one."""
    first, last = _bare(run[0]), _bare(run[-1])
    common = 0
    while common < min(len(first), len(last)) and first[common] == last[common]:
        common += 1
    for length in range(3, common + 1):
        stem = first[:length]
        before = start == 0 or not billable_bare[start - 1].startswith(stem)
        after = end == len(billable_bare) or not billable_bare[end].startswith(stem)
        if before and after:
            return f"{normalize_icd10(stem)}.*" if length == 3 else f"{normalize_icd10(stem)}*"
    return None


def compress(codes: Iterable[str], billable: list[str]) -> list[str]:
    """Patterns claiming exactly `codes` over `billable` (see the module docstring).

    Raises ValueError on a code that is not of the ICD-10-CM shape, and AssertionError should
    the patterns ever claim anything else than the list (checked by expanding them back).
    """
    wanted = {normalize_icd10(c) for c in codes if c.strip()}
    CodeSet.parse(sorted(wanted))  # refuses a malformed code, naming it
    billable_bare = [_bare(c) for c in billable]
    in_release = set(billable)
    patterns: list[str] = []
    run_start: int | None = None
    for index, code in enumerate([*billable, ""]):
        if code and code in wanted:
            if run_start is None:
                run_start = index
            continue
        if run_start is not None:
            run = billable[run_start:index]
            family = _family(run, billable_bare, run_start, index) if len(run) > 1 else None
            if len(run) == 1:
                patterns.append(run[0])
            elif family is not None:
                patterns.append(family)
            else:
                patterns.append(f"{run[0]}-{run[-1]}")
            run_start = None
    claimed = expand(patterns, billable)
    if claimed != wanted & in_release:
        raise AssertionError(f"patterns {patterns} do not claim exactly the codes given")
    return patterns + sorted(wanted - in_release)
