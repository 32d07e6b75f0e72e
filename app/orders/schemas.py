"""Orders: refunds and cancellations take back (and give back) exactly what they should."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from app.domain.types import MAX_AMOUNT
from app.members.schemas import Balance
from app.points.schemas import Currency
from app.schemas import Reason, StrictModel


class RefundRequest(StrictModel):
    amount: int = Field(strict=True, gt=0, le=MAX_AMOUNT, description="Minor units refunded.")
    currency: Currency
    reason: Reason | None = None


class CancelRequest(StrictModel):
    reason: Reason | None = None


class OrderState(BaseModel):
    amount: int | None = Field(description="Order total in minor units (null: never earned).")
    refunded_amount: int
    earned_points: int
    points_taken_back: int
    points_written_off: int = Field(
        description="Points the refunds could not take back (already spent; cap_at_zero)."
    )
    redeemed_points: int
    redeemed_returned: int
    cancelled: bool


class RefundResult(BaseModel):
    order_id: str
    member: str
    transaction_id: int | None = Field(description="Null when no points had to move.")
    refund_amount: int
    currency: str | None
    points_taken_back: int
    points_written_off: int
    redeemed_points_returned: int
    order: OrderState
    balance: Balance


class Order(BaseModel):
    order_id: str
    member: str
    currency: str | None
    state: OrderState
    created_at: datetime
