"""Referral responses."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

ReferralStatus = Literal["pending", "rewarded", "cap_reached", "clawed_back"]


class Referral(BaseModel):
    """A member this member referred, and where the referral stands.

    `pending`: waiting for the referee's first qualifying order. `cap_reached`: a qualifying
    order came while the referrer was at the program's monthly cap; the next qualifying order
    in a month with room is rewarded. `rewarded`: both got their bonus. `clawed_back`: the
    qualifying order was refunded inside the return window and both bonuses were taken back.
    """

    referee: str = Field(description="The referred member's external id.")
    status: ReferralStatus
    created_at: datetime = Field(description="When the referee enrolled with the code.")
    order_id: str | None = Field(description="The qualifying order, once there is one.")
    rewarded_at: datetime | None
    reward_transaction_id: int | None
    clawback_transaction_id: int | None


class ReferralPage(BaseModel):
    items: list[Referral]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next (older) page.")
