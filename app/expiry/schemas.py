"""Expiry requests and responses."""

from __future__ import annotations

import re
from datetime import datetime

from pydantic import BaseModel, Field

from app import errors

MAX_WITHIN_DAYS = 3650
_WITHIN = re.compile(r"([0-9]{1,4})d")


def parse_within(value: str) -> int:
    """The horizon `Nd` (N days, 0 to 3650) as a number of days; a 422 otherwise."""
    match = _WITHIN.fullmatch(value)
    days = int(match.group(1)) if match else -1
    if not 0 <= days <= MAX_WITHIN_DAYS:
        message = f"must be a number of days like 30d, from 0d to {MAX_WITHIN_DAYS}d"
        raise errors.ValidationFailed(
            f"within: {message}",
            errors=[{"loc": ["query", "within"], "msg": message, "type": "value_error"}],
        )
    return days


class ExpiringPoints(BaseModel):
    """Points that lapse together at one instant."""

    expires_at: datetime = Field(
        description="The instant the points lapse: the start of the local day (program time "
        "zone) after their last valid day."
    )
    points: int


class MemberExpiring(BaseModel):
    """What of a member's available points expires within the horizon, soonest first.

    Points already spent are never listed (only what is left of each earn), and points already
    due are expired before answering. Under the `inactivity` policy the whole balance lapses
    at `inactivity_deadline` unless the member earns or redeems before then."""

    member: str = Field(description="The member's external id.")
    policy: str = Field(
        description="The program's expiry policy: lifetime, inactivity, fixed_date or never."
    )
    as_of: datetime
    until: datetime = Field(description="The end of the horizon: `as_of` + `within`.")
    total: int = Field(description="Points expiring within the horizon.")
    expiring: list[ExpiringPoints]
    inactivity_deadline: datetime | None = Field(
        description="Under the inactivity policy: when all points lapse if the member has no "
        "earn or redemption before then. Null under the other policies."
    )
