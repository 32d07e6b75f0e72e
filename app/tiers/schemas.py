"""Tier requests and responses."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Annotated

from pydantic import BaseModel, Field, StringConstraints

from app.domain.tiers import Metric, TierReason
from app.schemas import IsoDate, IsoDateTime, StrictModel, Text

# A term boundary: a local date of the program ("2026-12-31"), or an instant with its zone.
TermBoundary = IsoDateTime | IsoDate

PaymentRef = Annotated[Text, StringConstraints(min_length=1, max_length=128)]


class GrantMembership(StrictModel):
    """A paid membership: `tier` for a fixed term, regardless of qualification."""

    tier: Annotated[str, StringConstraints(strict=True, min_length=1, max_length=64)] = Field(
        description="The code of one of the program's tiers.", examples=["gold"]
    )
    starts_at: TermBoundary = Field(
        description="First day of the term: a date in the program's time zone (`2026-12-01`), "
        "or an instant (`2026-12-01T09:00:00Z`), whose local date is the first day.",
        examples=["2026-12-01"],
    )
    ends_at: TermBoundary = Field(
        description="End of the term: a date is the last day, inclusive (`2027-11-30`); an "
        "instant is exclusive, so the last day is the local date just before it "
        "(`2027-12-01T00:00:00+01:00` in Paris ends on 30 November).",
        examples=["2027-11-30"],
    )
    payment_ref: PaymentRef | None = Field(
        default=None, description="The caller's payment reference, kept with the membership."
    )


class MembershipView(BaseModel):
    id: int
    member: str = Field(description="The member's external id.")
    tier: str
    starts_on: date = Field(description="First day of the term (program's local date).")
    ends_on: date = Field(description="Last day of the term, inclusive (local date).")
    payment_ref: str | None
    created_at: datetime


class MembershipPage(BaseModel):
    items: list[MembershipView]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page.")


class TierInfo(BaseModel):
    code: str
    name: str | None
    earn_multiplier: Decimal = Field(description="Multiplier applied to earns at this tier.")


class EarnedTierView(BaseModel):
    """The tier qualified for by the metric alone (memberships aside)."""

    tier: str
    since: date
    guaranteed_until: date | None
    reason: TierReason


class ProgressView(BaseModel):
    tier: str = Field(description="The tier this progress is towards (or to keep).")
    metric: Metric
    current: int = Field(description="Counted so far in the relevant window.")
    needed: int = Field(description="How much more of the metric it takes (0: met).")
    by: date | None = Field(description="Deadline (None: a rolling window has none).")
    summary: str = Field(examples=["420 more qualifying points by 2027-03-31 for gold"])


class MemberTier(BaseModel):
    """A member's tier status, evaluated to `evaluated_on` (today in the program's time zone)."""

    member: str = Field(description="The member's external id.")
    tier: TierInfo
    since: date = Field(description="Held since (local date).")
    guaranteed_until: date | None = Field(
        description="The tier is kept at least through this day (None for the base tier)."
    )
    reason: TierReason
    downgrade_on: date | None = Field(
        description="In a grace period: the first day at the lower tier unless requalified."
    )
    earned: EarnedTierView
    progress: ProgressView | None = Field(description="To the next tier (None at the top).")
    retention: ProgressView | None = Field(
        description="What it takes to keep the earned tier at its next review (None for the "
        "base tier)."
    )
    membership: MembershipView | None = Field(
        description="The paid membership in force today that grants the most, if any."
    )
    evaluated_on: date


class MembershipGranted(BaseModel):
    membership: MembershipView
    tier: MemberTier
