"""Calendar arithmetic shared by the program rules: local dates, month steps, period ends.

A program lives in one time zone (an IANA name such as ``Europe/Paris``). Business times
(`occurred_at`, `earned_at`) are instants; rules about "days", "months" and "years" are about
the program's *local* calendar, so every rule converts an instant to a local date first.

Worked example: an order at 2026-03-28T23:30Z is on Saturday 28 March in London but on
Sunday 29 March in Paris (UTC+1), so a Paris program's "Sunday" campaign applies to it.
"""

from __future__ import annotations

from calendar import monthrange
from datetime import UTC, date, datetime, time, timedelta
from functools import cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

ONE_DAY = timedelta(days=1)


@cache
def zone(name: str) -> ZoneInfo:
    """The time zone called `name` (an IANA name); ValueError if there is none."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError) as exc:
        raise ValueError(f"unknown time zone {name!r}") from exc


def check_timezone(name: str) -> str:
    """`name` if it is an IANA time zone name, else ValueError (a pydantic validator)."""
    if not name or name != name.strip() or len(name) > 64:
        raise ValueError(f"unknown time zone {name!r}")
    zone(name)
    return name


def local_datetime(instant: datetime, timezone: str) -> datetime:
    """`instant` as wall-clock time in `timezone`. Naive datetimes are refused: an instant
    without a zone is ambiguous, and guessing is how points land on the wrong day."""
    if instant.tzinfo is None or instant.utcoffset() is None:
        raise ValueError("a datetime with a time zone is required")
    return instant.astimezone(zone(timezone))


def local_date(instant: datetime, timezone: str) -> date:
    """The program's calendar date of `instant`."""
    return local_datetime(instant, timezone).date()


def start_of_day(day: date, timezone: str) -> datetime:
    """The first instant of local `day`, in UTC.

    Midnight is ambiguous or missing on a few DST changes (Chile moves its clocks at 24:00):
    zoneinfo's default (``fold=0``) reads a missing midnight with the offset before the change,
    which is exactly the instant the day begins.
    """
    local = datetime.combine(day, time(0), tzinfo=zone(timezone))
    return local.astimezone(UTC)


def month_end(day: date) -> date:
    """The last day of `day`'s month (29 February in leap years)."""
    return day.replace(day=monthrange(day.year, day.month)[1])


def quarter_end(day: date) -> date:
    """The last day of `day`'s calendar quarter (31 Mar, 30 Jun, 30 Sep, 31 Dec)."""
    last_month = ((day.month - 1) // 3 + 1) * 3
    return month_end(day.replace(day=1, month=last_month))


def add_months(day: date, months: int) -> date:
    """`day` moved by `months` calendar months, clamped to the end of a shorter month.

    31 January + 1 month is 28 February (29 in a leap year); 29 February 2024 + 12 months is
    28 February 2025. Clamping is not reversible: 31 March - 1 month + 1 month is 28 (or 29)
    March, so rules always step from their original anchor rather than month by month.
    """
    index = day.year * 12 + (day.month - 1) + months
    year, month = divmod(index, 12)
    month += 1
    if not 1 <= year <= 9999:
        raise ValueError("date out of range")
    return date(year, month, min(day.day, monthrange(year, month)[1]))


def year_end(day: date) -> date:
    """31 December of `day`'s year."""
    return date(day.year, 12, 31)
