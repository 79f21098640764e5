"""Calendar-month arithmetic for Medicare frequency windows.

CMS counts screening frequencies in months, not days: a yearly screening is covered when "at
least 11 full months have passed following the month in which the last covered screening was
performed" (Medicare Claims Processing Manual, Pub. 100-04, chapter 18, e.g. section 50 for
PSA, section 60 for FOBT), the 5-yearly cardiovascular screening when 59 full months have
(42 CFR 410.17). So a PSA on 2025-01-31 allows the next one from 2026-01-01, and one on
2025-01-01 does not allow one on 2025-12-31. Other limits run over a period of months from a
date ("within the 12-month period following the date of the most recent test", 42 CFR
410.18(d)): `months_before` gives the first day of such a period.
"""

from __future__ import annotations

import calendar
from datetime import date


def month_index(day: date) -> int:
    """Months since year 0: consecutive calendar months differ by one."""
    return day.year * 12 + day.month - 1


def full_months_after(earlier: date, later: date) -> int:
    """Full calendar months that have passed following the month of `earlier`, up to the
    month of `later` (0 when `later` is in the same or the next month, or before)."""
    return max(0, month_index(later) - month_index(earlier) - 1)


def add_months(day: date, months: int) -> date:
    """The same day `months` calendar months later (earlier when negative), clamped to the
    month's last day (2024-01-31 + 1 month = 2024-02-29)."""
    index = month_index(day) + months
    year, month = divmod(index, 12)
    month += 1
    last = calendar.monthrange(year, month)[1]
    return date(year, month, min(day.day, last))


def months_before(day: date, months: int) -> date:
    """The first day of the `months`-month period that ends on `day`: a test on this date
    or later falls within the period."""
    return add_months(day, -months) + (date.resolution)
