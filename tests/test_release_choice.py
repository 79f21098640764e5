"""Property tests: every date of service maps to exactly one ICD-10-CM release, in force or
marked out of date; windows are never stretched; the October 1 / April 1 rule."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import date, timedelta

from hypothesis import given
from hypothesis import strategies as st

from labintake.codes.release_choice import (
    choose_release,
    covers,
    default_effective_to,
    fiscal_year,
    newest,
)


@dataclass(frozen=True)
class Window:
    version: str
    effective_from: date
    effective_to: date | None
    release_date: date


DAYS = st.dates(min_value=date(2015, 10, 1), max_value=date(2035, 9, 30))


@st.composite
def windows(draw: st.DrawFn) -> list[Window]:
    count = draw(st.integers(min_value=0, max_value=6))
    found = []
    for n in range(count):
        start = draw(DAYS)
        length = draw(st.one_of(st.none(), st.integers(min_value=0, max_value=800)))
        end = None if length is None else start + timedelta(days=length)
        # the content's own date: the window's start, or later (an update standing in early)
        lead = draw(st.integers(min_value=0, max_value=200))
        found.append(Window(f"icd10cm-{n}", start, end, start + timedelta(days=lead)))
    return found


@given(windows(), DAYS)
def test_every_date_maps_to_exactly_one_release_or_to_out_of_date(
    loaded: list[Window], dos: date
) -> None:
    choice = choose_release(loaded, dos)
    if not loaded:
        assert (choice.release, choice.covered) == (None, False)
        return
    assert choice.release is not None
    in_force = [w for w in loaded if covers(w, dos)]
    assert choice.covered == bool(in_force)
    if choice.covered:
        assert choice.release in in_force  # never a release outside its window
        exact = [w for w in in_force if w.release_date <= dos]
        if exact:  # content already effective beats content standing in ahead of its date
            assert choice.release.release_date <= dos
    else:
        assert choice.release is newest(loaded)  # out of date: always the newest, never nearest
        assert choice.why in {"after", "before", "between"}
    shuffled = list(loaded)
    random.Random(dos.toordinal()).shuffle(shuffled)
    assert choose_release(shuffled, dos).release is choice.release  # order does not matter


@given(windows(), DAYS)
def test_a_pinned_release_is_used_but_never_silently_outside_its_window(
    loaded: list[Window], dos: date
) -> None:
    for window in loaded:
        choice = choose_release(loaded, dos, pinned=window.version)
        assert choice.release is window
        assert choice.covered == covers(window, dos)


@given(st.integers(min_value=2016, max_value=2040))
def test_october_and_april_releases_end_on_the_fiscal_years_september_30(year: int) -> None:
    assert default_effective_to(date(year, 10, 1)) == date(year + 1, 9, 30)
    assert default_effective_to(date(year, 4, 1)) == date(year, 9, 30)
    assert fiscal_year(date(year, 10, 1)) == year + 1
    assert fiscal_year(date(year, 9, 30)) == year


@given(DAYS)
def test_any_other_start_needs_an_explicit_end(day: date) -> None:
    if (day.month, day.day) not in ((10, 1), (4, 1)):
        assert default_effective_to(day) is None
    fy = fiscal_year(day)
    assert date(fy - 1, 10, 1) <= day <= date(fy, 9, 30)


@given(st.integers(min_value=2016, max_value=2040), st.integers(min_value=0, max_value=364))
def test_an_october_release_takes_back_the_months_an_april_update_stood_in_for(
    year: int, offset: int
) -> None:
    """FY(year+1): the April update stands for the whole year from October 1; once the
    October release is loaded it checks October to March, the update April to September."""
    start, end = date(year, 10, 1), date(year + 1, 9, 30)
    april = Window("april", start, end, date(year + 1, 4, 1))
    october = Window("october", start, end, start)
    dos = min(start + timedelta(days=offset), end)
    alone = choose_release([april], dos)
    assert (alone.release, alone.covered) == (april, True)
    both = choose_release([april, october], dos)
    assert both.covered
    assert both.release is (october if dos < date(year + 1, 4, 1) else april)
    after = choose_release([april, october], end + timedelta(days=1))
    assert (after.covered, after.why) == (False, "after")
