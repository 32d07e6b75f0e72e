"""A dry run for the cart page: what an order would earn and what the member can redeem."""

from __future__ import annotations

from pydantic import BaseModel, Field

from app.ledger.limits import MAX_AMOUNT, MinorUnits, PositivePoints
from app.members.schemas import Balance
from app.points.schemas import Currency
from app.schemas import ExternalId, Money, StrictModel, Text


class QuoteItem(StrictModel):
    sku: Text = Field(min_length=1, max_length=128)
    category: Text | None = Field(default=None, max_length=128)
    quantity: int = Field(strict=True, gt=0, le=1_000_000)
    unit_price: MinorUnits


class QuoteOrder(StrictModel):
    amount: int = Field(strict=True, ge=0, le=MAX_AMOUNT, description="Minor units.")
    currency: Currency
    items: list[QuoteItem] | None = Field(default=None, max_length=500)


class QuoteRequest(StrictModel):
    member: ExternalId
    order: QuoteOrder
    redeem_points: PositivePoints | None = None


class Quote(BaseModel):
    member: str
    known_member: bool = Field(description="False: the member would be enrolled by the earn.")
    earn_points: int = Field(description="Points this order would earn at the base rate.")
    earn_pending: bool = Field(description="True: they would wait out the return window.")
    redeemable_points: int = Field(description="Points the member can redeem now.")
    redeemable_value: Money
    redeem_points: int | None
    redeem_value: Money | None
    redeem_allowed: bool | None = Field(description="Whether redeem_points can be redeemed.")
    balance: Balance = Field(description="The balance now.")
    balance_after: Balance = Field(description="After redeeming redeem_points and earning.")
