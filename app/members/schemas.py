"""Member requests and responses."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from pydantic import BaseModel, Field

from app.schemas import ExternalId, IsoDate, Metadata, Money, StrictModel


class EnrollMember(StrictModel):
    external_id: ExternalId
    birthday: IsoDate | None = None
    attributes: Metadata | None = None


class Balance(BaseModel):
    """A member's points: spendable now, waiting out the return window, reserved by holds;
    each with its money value at the program's point value (rounded down).

    `available` is net of points the member owes after a refund under the `allow_negative`
    return policy, so it can be below zero there."""

    available: int
    pending: int
    held: int
    available_value: Money
    pending_value: Money
    held_value: Money


class PendingLot(BaseModel):
    points: int = Field(description="Points still pending from this earn.")
    available_at: datetime = Field(description="When they become available.")
    order_id: str | None


class Member(BaseModel):
    external_id: str
    birthday: date | None
    attributes: dict[str, Any]
    created_at: datetime
    balance: Balance
    pending_lots: list[PendingLot] = Field(
        description="Pending points by earn, soonest first, with when each becomes available."
    )
