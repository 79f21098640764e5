"""Is this diagnosis code one a coder may put on an order? Checked as it is typed.

A correction must leave the order better than it found it: the code the office gave has to be
a complete, billable ICD-10-CM code in the release used for the order's date of service. The
answer is a sentence for the coder, shown beside the field, with the official title when the
code exists.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING

from labintake.codes.icd10 import looks_like_icd10, normalize_icd10

if TYPE_CHECKING:
    from labintake.codes.icd10 import Icd10Release


@dataclass(frozen=True, slots=True)
class CodeCheck:
    code: str  # normalised (E11.9)
    ok: bool
    reason: str  # a sentence for the coder
    description: str = ""  # the official title, when the code exists in the release
    release: str = ""


def check_diagnosis_code(release: Icd10Release | None, raw: str, dos: date) -> CodeCheck:
    """Whether `raw` is a valid, billable ICD-10-CM code under `release` for `dos`."""
    typed = raw.strip()
    code = normalize_icd10(typed)
    if not typed:
        return CodeCheck("", False, "Type the ICD-10-CM code the office gave.")
    if not looks_like_icd10(code):
        return CodeCheck(
            code, False, f"{typed} is not an ICD-10-CM code (a letter, then digits, e.g. E11.9)."
        )
    shown = code
    if release is None:
        return CodeCheck(code, False, "No ICD-10-CM release is loaded: the code cannot be checked.")
    entry = release.get(code)
    if entry is None:
        return CodeCheck(
            code,
            False,
            f"{shown} is not a code of the ICD-10-CM release used for the "
            f"date of service {dos:%Y-%m-%d} ({release.version}). Check the code with the office.",
            release=release.version,
        )
    if entry.seventh_char_required and not entry.billable:
        return CodeCheck(
            code,
            False,
            f"{shown} ({entry.description}) needs its 7th character (the episode of care, "
            "e.g. A, D or S): ask the office which applies.",
            entry.description,
            release.version,
        )
    if not entry.billable:
        below = sum(1 for e in release.descendants(code) if e.billable)
        return CodeCheck(
            code,
            False,
            f"{shown} ({entry.description}) is a heading, not a complete code: the office's "
            f"answer must name one of the {below} complete codes under it.",
            entry.description,
            release.version,
        )
    return CodeCheck(
        code,
        True,
        f"{shown} {entry.description}: valid and billable on {dos:%Y-%m-%d} "
        f"(release {release.version}).",
        entry.description,
        release.version,
    )
