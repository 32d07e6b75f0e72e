"""Holds at checkout: authorize, then capture or release."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from app.domain.types import PositivePoints
from app.members.schemas import Balance
from app.schemas import ExternalId, OrderId, StrictModel


class CreateHold(StrictModel):
    member: ExternalId
    points: PositivePoints
    order_id: OrderId | None = None
    expires_in: int | None = Field(
        default=None,
        strict=True,
        ge=1,
        le=604_800,
        description="Seconds until the hold is released by itself (default: the program's).",
    )


class CaptureHold(StrictModel):
    points: PositivePoints | None = Field(
        default=None, description="Points to capture (default: all); the rest is released."
    )


class Hold(BaseModel):
    hold_id: int
    member: str
    points: int
    captured_points: int
    status: str = Field(description="open, captured, released or expired")
    order_id: str | None
    expires_at: datetime
    created_at: datetime
    closed_at: datetime | None
    transaction_id: int | None = Field(
        default=None, description="The ledger transaction this request posted."
    )
    balance: Balance
