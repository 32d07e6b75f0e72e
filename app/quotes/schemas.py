"""A dry run for the cart page: what an order would earn and what the member can redeem."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from app.domain.earning import MAX_ITEMS, BreakdownLine, OrderItem
from app.domain.types import MAX_AMOUNT, PositivePoints
from app.members.schemas import Balance
from app.points.schemas import Currency
from app.schemas import ExternalId, IsoDateTime, Money, PosId, StrictModel


class QuoteOrder(StrictModel):
    amount: int = Field(strict=True, ge=0, le=MAX_AMOUNT, description="Minor units.")
    currency: Currency
    items: list[OrderItem] | None = Field(default=None, max_length=MAX_ITEMS)


class QuoteRequest(StrictModel):
    member: ExternalId
    order: QuoteOrder
    redeem_points: PositivePoints | None = None
    occurred_at: IsoDateTime | None = Field(default=None, description="Default: now.")
    store_id: PosId | None = None
    channel: Literal["web", "pos", "app"] | None = None


class Quote(BaseModel):
    member: str
    known_member: bool = Field(description="False: the member would be enrolled by the earn.")
    earn_points: int = Field(description="Points this order would earn under the current rules.")
    rules_version: int = Field(description="The rule-set version the quote was computed with.")
    breakdown: list[BreakdownLine] = Field(description="Which rule would give how many points.")
    earn_pending: bool = Field(description="True: they would wait out the return window.")
    redeemable_points: int = Field(description="Points the member can redeem now.")
    redeemable_value: Money
    redeem_points: int | None
    redeem_value: Money | None
    redeem_allowed: bool | None = Field(description="Whether redeem_points can be redeemed.")
    balance: Balance = Field(description="The balance now.")
    balance_after: Balance = Field(description="After redeeming redeem_points and earning.")
