"""Expiry: when earned points lapse, and which points a redemption spends.

Every earn is a *lot*: its points, what is left of them (`remaining`), when they were earned and
when they expire. The program chooses one policy:

- ``lifetime``: each lot lives a fixed number of months, optionally to the end of that month or
  quarter. Earned 15 March 2025 with 12 months: valid through 15 March 2026; rounded to the
  month end, through 31 March 2026; to the quarter end, also 31 March 2026 (Q1).
- ``inactivity``: lots have no date of their own; *all* points lapse once the member has had no
  activity (earn or redeem) for N months -- see `inactivity_expires_at`.
- ``fixed_date``: all points earned in one "earning year" lapse together on a fixed day.
  With 31 December and ``years_after=1`` (the default), points earned in 2025 are valid
  through 31 December 2026. With ``years_after=0`` they lapse on the first 31 December on or
  after the earn -- 31 December 2025 -- so points earned on 30 December live one day.
- ``never``.

Dates are local dates in the program's time zone and "valid through D" means valid all day D:
the lot's `expires_at` is the first instant of the next local day (stored in UTC), and the
points are gone at that instant (the ledger expires lots with ``expires_at <= now``).

Python decides *when* a lot lapses (`lot_expires_at`, `inactivity_expires_at`) and passes the
instant to the ledger with the posting; the ledger (SQL) keeps the lots and spends them FIFO
by expiry: a redemption takes the lot that expires first, then the next; equal expiry goes to
the older earn, then the lower lot id; lots that never expire come last. Only `remaining`
points can expire or be spent, so points already spent never expire.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Literal, Self

from pydantic import Field, model_validator

from app.domain.dates import (
    ONE_DAY,
    add_months,
    local_date,
    month_end,
    quarter_end,
    start_of_day,
)
from app.domain.types import RuleModel


class LifetimePolicy(RuleModel):
    """Each lot is valid `months` after its earn date, optionally through the end of the
    month or quarter that date falls in."""

    kind: Literal["lifetime"] = "lifetime"
    months: int = Field(strict=True, ge=1, le=1200)
    round_to: Literal["none", "month_end", "quarter_end"] = "none"


class InactivityPolicy(RuleModel):
    """All of a member's points lapse `months` after their last earn or redemption."""

    kind: Literal["inactivity"] = "inactivity"
    months: int = Field(strict=True, ge=1, le=1200)


class FixedDatePolicy(RuleModel):
    """Points lapse on a fixed day of the year (`month`/`day`): those earned up to and
    including that day's first occurrence on or after the earn are valid through that
    occurrence plus `years_after` years. 29 February is refused: pick 28 February or 1 March."""

    kind: Literal["fixed_date"] = "fixed_date"
    month: int = Field(strict=True, ge=1, le=12)
    day: int = Field(strict=True, ge=1, le=31)
    years_after: int = Field(strict=True, default=1, ge=0, le=100)

    @model_validator(mode="after")
    def _real_day(self) -> Self:
        try:
            date(2001, self.month, self.day)  # a year without 29 February
        except ValueError:
            day = f"{self.month:02d}-{self.day:02d}"
            raise ValueError(f"{day} is not a day of every year") from None
        return self


class NeverPolicy(RuleModel):
    """Points never lapse."""

    kind: Literal["never"] = "never"


ExpiryPolicy = Annotated[
    LifetimePolicy | InactivityPolicy | FixedDatePolicy | NeverPolicy,
    Field(discriminator="kind"),
]


def valid_through(policy: ExpiryPolicy, earned_on: date) -> date | None:
    """The last local day on which a lot earned on `earned_on` can be spent (None: never
    lapses on its own; under ``inactivity`` see `inactivity_valid_through`).

    Worked examples: lifetime 12 months from 29 Feb 2024 is 28 Feb 2025 (no 29th);
    1 month from 31 Jan 2024 is 29 Feb 2024 (leap year); 1 month to the quarter end from
    15 Feb 2025 is 31 March 2025; fixed 31 Dec from 31 Dec 2025 is 31 Dec 2026.
    """
    if isinstance(policy, LifetimePolicy):
        last = add_months(earned_on, policy.months)
        if policy.round_to == "month_end":
            return month_end(last)
        if policy.round_to == "quarter_end":
            return quarter_end(last)
        return last
    if isinstance(policy, FixedDatePolicy):
        first = date(earned_on.year, policy.month, policy.day)
        if first < earned_on:
            first = first.replace(year=first.year + 1)
        return first.replace(year=first.year + policy.years_after)
    return None


def lot_expires_at(policy: ExpiryPolicy, earned_at: datetime, timezone: str) -> datetime | None:
    """The instant (UTC) a lot earned at `earned_at` lapses: the start of the local day after
    its last valid day. None if the lot has no date of its own.

    Worked example (Europe/Paris, lifetime 12 months): earned 2025-03-15T10:00+01:00, valid
    through 2026-03-15, so it lapses at 2026-03-16T00:00+01:00 = 2026-03-15T23:00Z. Earned in
    summer, 2025-07-01, it lapses at 2026-07-02T00:00+02:00 = 2026-07-01T22:00Z.
    """
    last = valid_through(policy, local_date(earned_at, timezone))
    return None if last is None else start_of_day(last + ONE_DAY, timezone)


def inactivity_valid_through(policy: InactivityPolicy, last_activity_on: date) -> date:
    """Under ``inactivity``, the last local day the points can be spent, given the local date
    of the member's last earn or redemption: 10 May 2025 + 18 months = 10 November 2026."""
    return add_months(last_activity_on, policy.months)


def inactivity_expires_at(
    policy: InactivityPolicy, last_activity_at: datetime, timezone: str
) -> datetime:
    """Under ``inactivity``, the instant (UTC) all of the member's points lapse: the start of
    the local day after `inactivity_valid_through`. Any later earn or redemption moves it."""
    last = inactivity_valid_through(policy, local_date(last_activity_at, timezone))
    return start_of_day(last + ONE_DAY, timezone)
