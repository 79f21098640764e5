"""Reading the CMS "Medicare National Coverage Determinations (NCD) Coding Policy Manual and
Change Report (ICD-10-CM)" in its published layout, as text.

CMS publishes the lab NCD code lists quarterly in that manual (a PDF); its text, as extracted
by `pdftotext -layout` or copied out of the PDF, is what this reader takes. The layout, per
lab NCD section (190.12 to 190.34):

    190.23 - Lipids Testing                       <- section heading: number, dash, title
    Description ... (narrative)
    HCPCS Codes (Alphanumeric, CPT AMA)           <- procedure codes of the policy
    Code   Description
    80061  Lipid panel
    ICD-10-CM Codes Covered by Medicare Program    <- the covered list
    Code   Description
    E78.00 Pure hypercholesterolemia, unspecified
    ICD-10-CM Codes That Do Not Support Medical Necessity   <- negative lists
    ICD-10-CM Codes Denied ...
    Indications / Limitations / Coding Guidelines / Documentation Requirements ... (prose)

Each code row starts with the code (a leading `*` marks a row changed in that quarter), its
description follows on the same line or the next; a row may give a range (`C50.011-C50.929`).
Running heads and footers (`Medicare National Coverage Determinations (NCD) Coding Policy
Manual ...`, `NCD 190.23 *October 2019 Changes ...`, `Fu Associates, Ltd. ...`) and the table
of contents are skipped. Under a covered heading, "Any ICD-10-CM code not listed in either of
the ICD-10-CM sections below" marks an inverted policy (190.15 blood counts: everything is
covered but its negative lists). The "Non-covered ICD-10-CM Codes for All Lab NCDs" section is the
global never-covered list: its codes are counted as skipped (it belongs to
`never_covered.toml`, not to one NCD). The ICD-9-CM editions of the manual are refused.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from labintake.codes.policies import CodeSet

# "190.23 - Lipids Testing", "190.20A - Blood Glucose Testing" (the edit module's A/B halves)
_SECTION = re.compile(r"^\s*(190\.\d{2})[A-Z]?\s+[-\u2013\u2014]\s+(\S.*?)\s*$")
_DOT_LEADER = re.compile(r"\s*(\.\s*){3,}\d*\s*$")
_ICD10 = re.compile(r"^[A-Z][0-9][0-9A-Z](?:\.[0-9A-Z]{1,4})?$")
_ICD10_RANGE = re.compile(
    r"^([A-Z][0-9][0-9A-Z](?:\.[0-9A-Z]{1,4})?)-([A-Z][0-9][0-9A-Z](?:\.[0-9A-Z]{1,4})?)$"
)
_PROCEDURE = re.compile(r"^(\d{4}[0-9A-Z]|[A-V]\d{4})$")
_EDITION = re.compile(r"\b(January|April|July|October)\s+(20\d\d)\b(?:\s+Changes)?", re.IGNORECASE)

# Sub-headings that switch which list the following code rows belong to. (A section's
# "Description" prose needs none: it follows the 190.xx heading, before any list; and the word
# alone is also the tables' column heading.)
_HEADINGS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"^HCPCS Codes\b", re.IGNORECASE), "hcpcs"),
    (re.compile(r"^ICD-10-CM Codes Covered by Medicare", re.IGNORECASE), "covered"),
    (re.compile(r"^ICD-10-CM Codes That Do Not Support", re.IGNORECASE), "does_not_support"),
    (re.compile(r"^ICD-10-CM Codes (Denied|Not Covered)", re.IGNORECASE), "not_covered"),
    (re.compile(r"^Non-?covered ICD-10-CM Codes for All", re.IGNORECASE), "global"),
    (
        re.compile(
            r"^(Indications|Limitations|Coding Guidelines|Additional Coding Guidelines|"
            r"Documentation Requirements|Sources? of Information|Other Comments|"
            r"Reasons? for Denial|Table of Contents|"
            r"NCD Manual Changes|Introduction)\b",
            re.IGNORECASE,
        ),
        "",
    ),
)
_ICD9_HEADING = re.compile(r"ICD-9-CM Codes (Covered|That Do Not Support|Denied)", re.IGNORECASE)
_RUNNING = re.compile(
    r"^(Medicare National Coverage Determinations|NCD 190\.\d{2}\b|Fu Associates|"
    r"This is CMS Logo|Code\s+Description$|Code$|Description$|Page \d+)",
    re.IGNORECASE,
)

_ANY_NOT_LISTED = re.compile(r"^Any ICD-10-CM code not listed", re.IGNORECASE)

LISTS = ("covered", "not_covered", "hcpcs")
_INTO = {"covered": "covered", "does_not_support": "not_covered", "not_covered": "not_covered"}


@dataclass(frozen=True, slots=True)
class ManualProblem:
    line: int
    reason: str


@dataclass
class ManualLists:
    """What the manual text gave: per NCD its lists and title, plus what was left aside."""

    lists: dict[str, dict[str, list[str]]] = field(default_factory=dict)
    titles: dict[str, str] = field(default_factory=dict)
    inverted: set[str] = field(default_factory=set)  # NCDs covering all but their negative lists
    edition: str = ""  # e.g. "October 2025", from the running heads
    rows_read: int = 0
    global_codes: int = 0  # rows of the all-NCD never-covered list (not imported here)
    problems: list[ManualProblem] = field(default_factory=list)


def looks_like_manual(text: str) -> bool:
    """True when the text reads like the NCD coding policy manual (heading of a 190.xx section
    and one of its list headings)."""
    head = text[:200_000]
    return bool(
        re.search(r"^\s*190\.\d{2}[A-Z]?\s+[-\u2013\u2014]\s+\S", head, re.MULTILINE)
        and re.search(r"(HCPCS Codes|ICD-1?[09]-CM Codes)", head)
    )


def _code_row(first: str) -> tuple[str, str] | None:
    """(kind, code) of a row's first token: kind "icd" (code or range) or "procedure"."""
    token = first.lstrip("*").upper()
    if _ICD10.match(token) or _ICD10_RANGE.match(token):
        return "icd", token
    if _PROCEDURE.match(token):
        return "procedure", token
    return None


def read_manual_text(text: str) -> ManualLists:
    out = ManualLists()
    if _ICD9_HEADING.search(text) and not re.search(r"ICD-10-CM Codes", text):
        out.problems.append(
            ManualProblem(0, "ICD-9-CM edition: this is the ICD-9-CM manual, not the ICD-10-CM one")
        )
        return out
    ncd: str | None = None
    section = ""
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line:
            continue
        if not out.edition:
            found = _EDITION.search(line) if "Changes" in line or "Manual" in line else None
            if found:
                out.edition = f"{found.group(1).title()} {found.group(2)}"
        heading = _SECTION.match(line)
        if heading:
            ncd, section = heading.group(1), ""
            title = _DOT_LEADER.sub("", heading.group(2)).strip()
            if title:
                out.titles.setdefault(ncd, title)
            continue
        switched = next((kind for pattern, kind in _HEADINGS if pattern.match(line)), None)
        if switched is not None:
            section = switched
            continue
        if not section or _RUNNING.match(line):
            continue
        if section == "covered" and ncd is not None and _ANY_NOT_LISTED.match(line):
            out.inverted.add(ncd)
            continue
        row = _code_row(line.split()[0])
        if row is None:
            continue  # a description line (wrapped, or below its code)
        kind, code = row
        out.rows_read += 1
        if section == "global":
            out.global_codes += 1
            continue
        if ncd is None:
            out.problems.append(ManualProblem(number, f"code before any 190.xx section: {code}"))
            continue
        target = "hcpcs" if section == "hcpcs" else _INTO[section]
        if (kind == "procedure") != (target == "hcpcs"):
            out.problems.append(
                ManualProblem(number, f"code of the wrong kind for its list: {code} in {section}")
            )
            continue
        if kind == "icd":
            try:
                CodeSet.parse([code])
            except ValueError as exc:
                out.problems.append(
                    ManualProblem(number, f"not an ICD-10-CM code, range or prefix: {exc}")
                )
                continue
        lists = out.lists.setdefault(ncd, {name: [] for name in LISTS})
        if code not in lists[target]:
            lists[target].append(code)
    if not out.lists and not out.problems:
        out.problems.append(ManualProblem(0, "no code rows under any 190.xx list heading"))
    return out
