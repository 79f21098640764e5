"""Which ICD-10-CM release checks an order: the one in force on its date of service, or, when
no loaded release covers that date, the newest one - said plainly, never silently.

ICD-10-CM takes effect every October 1 (the fiscal year's release) with April 1 updates, and
there is no grace period: a diagnosis is valid only under the release in force on the date of
service (ICD-10-CM Official Guidelines, Section I.A; HIPAA code-set rule, 45 CFR 162.1002).
A release's window is its manifest's `effective_from` .. `effective_to`, never extended.

Among the releases whose window covers the date:

1. a release whose content was already effective on the date (`release_date <= dos`) wins over
   one standing in ahead of its own date (an April update approximating its fiscal year from
   October 1), so an October release, once loaded, takes back October to March;
2. then the latest `effective_from` (a newly imported version takes over from its date);
3. then the latest `release_date` (an April update over the October release it carries).

When none covers the date (after the newest window, before the oldest, in a gap between
windows, or a pinned version outside its window) the newest release (latest `release_date`,
then `effective_from`) is used and the choice is marked out of date; the engine turns that
into a CODE_TABLES_OUT_OF_DATE finding. Pure: values in, values out.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from typing import Generic, Protocol, TypeVar

IMPORT_HINT = "labintake codes import icd10cm icd10cm-order-YYYY.txt --effective-from YYYY-10-01"


class ReleaseWindow(Protocol):
    """What the choice needs of a release (an `Icd10Release` or a bare window in tests)."""

    @property
    def version(self) -> str: ...
    @property
    def effective_from(self) -> date: ...
    @property
    def effective_to(self) -> date | None: ...
    @property
    def release_date(self) -> date: ...


R = TypeVar("R", bound=ReleaseWindow)


@dataclass(frozen=True, slots=True)
class ReleaseChoice(Generic[R]):
    release: R | None  # None only when no release is loaded
    covered: bool  # True: the release's window covers the date of service
    why: str  # "in force", "after", "before", "between", "pinned", "none loaded"

    @property
    def out_of_date(self) -> bool:
        return not self.covered


def covers(release: ReleaseWindow, dos: date) -> bool:
    return release.effective_from <= dos and (
        release.effective_to is None or dos <= release.effective_to
    )


def newest(releases: Sequence[R]) -> R | None:
    return max(releases, key=lambda r: (r.release_date, r.effective_from, r.version), default=None)


def choose_release(
    releases: Sequence[R], dos: date, *, pinned: str | None = None
) -> ReleaseChoice[R]:
    """The release that checks an order dated `dos` (see the module text for the rule)."""
    if pinned is not None:
        chosen = next((r for r in releases if r.version == pinned), None)
        if chosen is not None:
            ok = covers(chosen, dos)
            return ReleaseChoice(chosen, ok, "in force" if ok else "pinned")
    covering = [r for r in releases if covers(r, dos)]
    if covering:
        best = max(
            covering,
            key=lambda r: (r.release_date <= dos, r.effective_from, r.release_date, r.version),
        )
        return ReleaseChoice(best, True, "in force")
    latest = newest(releases)
    if latest is None:
        return ReleaseChoice(None, False, "none loaded")
    if all(r.effective_to is not None and r.effective_to < dos for r in releases):
        why = "after"
    elif all(dos < r.effective_from for r in releases):
        why = "before"
    else:
        why = "between"
    return ReleaseChoice(latest, False, why)


def fiscal_year(day: date) -> int:
    """The federal fiscal year a date falls in (FY2026: 2025-10-01 .. 2026-09-30)."""
    return day.year + 1 if day.month >= 10 else day.year


def default_effective_to(effective_from: date) -> date | None:
    """October 1 release -> September 30 next year; April 1 update -> September 30 the same
    year (the fiscal year's end); None for any other start (the caller must give the end)."""
    if (effective_from.month, effective_from.day) in ((10, 1), (4, 1)):
        return date(fiscal_year(effective_from), 9, 30)
    return None


def day_text(day: date) -> str:
    """`f"{day:%Y-%m-%d}"` without strftime (several times slower than isoformat, and this
    text is written for every order while the tables are out of date); strftime does not pad
    years before 1000, and a datetime's isoformat has its time, so those still go through it."""
    return day.isoformat() if type(day) is date and day.year >= 1000 else f"{day:%Y-%m-%d}"


_TEXTS: dict[tuple[object, ...], str] = {}
_TEXTS_LIMIT = 4096


def out_of_date_text(choice: ReleaseChoice[R], dos: date) -> str:
    """One sentence for the coder and the logs: what was used and why it is not right.

    Remembered by what it says (release, why, date): while the tables are out of date every
    order gets it, and the orders of a batch share a few dates of service."""
    release = choice.release
    key = (dos, choice.why) + (
        (release.version, release.effective_from, release.effective_to)
        if release is not None
        else ()
    )
    text = _TEXTS.get(key)
    if text is None:
        if len(_TEXTS) >= _TEXTS_LIMIT:
            _TEXTS.clear()
        text = _TEXTS[key] = _out_of_date_text(choice, dos)
    return text


def _out_of_date_text(choice: ReleaseChoice[R], dos: date) -> str:
    release = choice.release
    if release is None:
        return (
            f"No ICD-10-CM release is loaded, so the diagnoses for {day_text(dos)} cannot be "
            f"checked. Load the release in force: `{IMPORT_HINT}`."
        )
    window = f"{day_text(release.effective_from)} to " + (
        f"{day_text(release.effective_to)}" if release.effective_to else "open end"
    )
    where = {
        "after": "after the newest loaded release ends",
        "before": "before the oldest loaded release begins",
        "between": "in a gap between the loaded releases",
        "pinned": "outside the window of the pinned release",
    }.get(choice.why, "outside every loaded release")
    fy = fiscal_year(dos)
    start = date(fy - 1, 10, 1)
    return (
        "The code tables are out of date for this order: its date of service "
        f"{day_text(dos)} falls {where}, so the diagnoses were checked against "
        f"{release.version} ({window}) instead of the ICD-10-CM release in force (FY{fy}, "
        f"from {day_text(start)}). Codes added, deleted or expanded since may be judged "
        f"wrongly. Load the FY{fy} release: "
        f"`labintake codes import icd10cm icd10cm-order-{fy}.txt --effective-from "
        f"{day_text(start)}`, then re-verify the order."
    )


def ends_before(releases: Sequence[ReleaseWindow], today: date) -> ReleaseWindow | None:
    """The newest release when every loaded window has ended before `today` (else None)."""
    latest = newest(releases)
    if latest is None:
        return None
    last_day = max(
        (r.effective_to if r.effective_to is not None else date.max for r in releases),
        default=date.max,
    )
    return latest if last_day < today else None


__all__ = [
    "IMPORT_HINT",
    "ReleaseChoice",
    "choose_release",
    "covers",
    "day_text",
    "default_effective_to",
    "ends_before",
    "fiscal_year",
    "newest",
    "out_of_date_text",
]
