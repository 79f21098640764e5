"""Calendar-month windows as CMS counts them (Pub. 100-04 ch. 18: 'at least 11 full months
have passed following the month in which the last screening was performed')."""

from __future__ import annotations

from datetime import date, timedelta

from hypothesis import given
from hypothesis import strategies as st

from labintake.verification.months import (
    add_months,
    full_months_after,
    month_index,
    months_before,
)

days = st.dates(min_value=date(1950, 1, 1), max_value=date(2090, 12, 31))
months = st.integers(min_value=0, max_value=240)


def test_a_yearly_screening_is_allowed_from_the_first_day_of_the_twelfth_month() -> None:
    last = date(2025, 1, 31)
    assert full_months_after(last, date(2025, 12, 31)) == 10
    assert full_months_after(last, date(2026, 1, 1)) == 11
    assert full_months_after(date(2025, 1, 1), date(2025, 12, 31)) == 10


def test_the_five_year_limit_is_59_full_months_not_1826_days() -> None:
    last = date(2021, 5, 28)
    dos = date(2026, 5, 12)
    assert (dos - last).days < 5 * 365
    assert full_months_after(last, dos) == 59


@given(days, days)
def test_full_months_ignore_the_day_within_each_month(earlier: date, later: date) -> None:
    assert full_months_after(earlier, later) == full_months_after(
        earlier.replace(day=1), later.replace(day=1)
    )


@given(days, days, st.integers(min_value=1, max_value=400))
def test_full_months_never_decrease_as_the_later_date_moves_on(
    earlier: date, later: date, step: int
) -> None:
    assert full_months_after(earlier, later) <= full_months_after(
        earlier, later + timedelta(days=step)
    )


@given(days)
def test_the_same_or_next_month_has_no_full_month_after(day: date) -> None:
    assert full_months_after(day, day) == 0
    assert full_months_after(day, add_months(day, 1)) == 0
    assert full_months_after(day, add_months(day, 2)) == 1


@given(days, months)
def test_full_months_count_the_months_strictly_between(day: date, n: int) -> None:
    later = add_months(day, n + 1)
    assert full_months_after(day, later) == n


@given(days, st.integers(min_value=-240, max_value=240))
def test_adding_months_moves_the_month_and_keeps_or_clamps_the_day(day: date, n: int) -> None:
    moved = add_months(day, n)
    assert month_index(moved) == month_index(day) + n
    assert moved.day <= day.day
    if moved.day < day.day:  # clamped: the last day of a shorter month
        assert (moved + timedelta(days=1)).day == 1


@given(days, st.integers(min_value=1, max_value=120))
def test_a_rolling_period_starts_the_day_after_the_same_date_months_earlier(
    day: date, n: int
) -> None:
    start = months_before(day, n)
    assert start > add_months(day, -n)
    assert start - timedelta(days=1) == add_months(day, -n)
    assert start <= day
