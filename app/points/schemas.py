"""Requests and responses for earning, redeeming and adjusting points."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, Field, model_validator

from app.currency import is_currency
from app.domain.earning import MAX_ITEMS, BreakdownLine, OrderItem
from app.domain.types import MinorUnits, PositivePoints, SignedPoints
from app.members.schemas import Balance
from app.schemas import (
    ExternalId,
    IsoDateTime,
    Metadata,
    OrderId,
    PosId,
    Reason,
    StrictModel,
)


def _known_currency(code: str) -> str:
    if not is_currency(code):
        raise ValueError(f"{code!r} is not an ISO 4217 currency code")
    return code


Currency = Annotated[
    str,
    Field(strict=True, pattern=r"^[A-Z]{3}$", examples=["EUR"]),
    AfterValidator(_known_currency),
]


# metadata keys an earn writes itself (the rules that produced its points)
RESERVED_METADATA = frozenset({"rules_version", "breakdown"})


class Order(StrictModel):
    id: OrderId
    amount: MinorUnits = Field(description="Order total in minor units (cents for EUR).")
    currency: Currency
    items: list[OrderItem] | None = Field(
        default=None,
        max_length=MAX_ITEMS,
        description="Order lines, for rules by SKU or category (multipliers, exclusions). "
        "With items, the items are what earns; without, the whole amount is one line.",
    )


class EarnRequest(StrictModel):
    member: ExternalId
    points: PositivePoints | None = Field(
        default=None, description="Points to award. Without it, the order earns at the base rate."
    )
    order: Order | None = None
    occurred_at: IsoDateTime | None = Field(
        default=None, description="When the sale happened (default: now); may be in the past."
    )
    metadata: Metadata | None = None
    store_id: PosId | None = None
    terminal_id: PosId | None = None
    channel: Literal["web", "pos", "app"] | None = Field(
        default=None,
        description="Sales channel for rules with a channel filter (default: `pos` when a "
        "store or terminal is given, else `web`).",
    )

    @model_validator(mode="after")
    def points_or_order(self) -> EarnRequest:
        if self.points is None and self.order is None:
            raise ValueError("give points, or an order to compute them from")
        reserved = sorted(set(self.metadata or {}) & RESERVED_METADATA)
        if reserved:
            raise ValueError(f"metadata keys {reserved} are reserved for the rules")
        return self


class RedeemRequest(StrictModel):
    member: ExternalId
    points: PositivePoints
    order_id: OrderId | None = None
    occurred_at: IsoDateTime | None = Field(
        default=None, description="When the sale happened (default: now); may be in the past."
    )
    metadata: Metadata | None = None
    store_id: PosId | None = None
    terminal_id: PosId | None = None


class AdjustmentRequest(StrictModel):
    member: ExternalId
    points: SignedPoints = Field(description="Signed: positive credits, negative debits.")
    reason: Reason

    @model_validator(mode="after")
    def not_zero(self) -> AdjustmentRequest:
        if self.points == 0:
            raise ValueError("points must not be zero")
        return self


class PostingResponse(BaseModel):
    transaction_id: int
    member: str
    points: int
    balance: Balance
    rules_version: int | None = Field(
        default=None, description="Earns computed by the rules: the rule-set version used."
    )
    breakdown: list[BreakdownLine] | None = Field(
        default=None, description="Earns computed by the rules: which rule gave how many points."
    )
    qualifying: int | None = Field(
        default=None, description="Qualifying credit of the earn (programs with tiers)."
    )
