"""Batches of earn/redeem events (POS offline sync, imports)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, TypeAdapter

from app.errors import Problem
from app.members.schemas import Balance
from app.points.schemas import EarnRequest, RedeemRequest

MAX_BATCH = 1000

EventId = Annotated[
    str,
    Field(
        strict=True,
        min_length=1,
        max_length=255,
        pattern=r"^[\x21-\x7E]+$",
        description="The event's own id: its idempotency key (same namespace as Idempotency-Key).",
    ),
]


class EarnEvent(EarnRequest):
    id: EventId
    type: Literal["earn"]


class RedeemEvent(RedeemRequest):
    id: EventId
    type: Literal["redeem"]


Event = Annotated[EarnEvent | RedeemEvent, Field(discriminator="type")]
EVENT = TypeAdapter(Event)


class EventBatch(BaseModel):
    """Up to 1,000 events; each is validated on its own, so one malformed event is refused
    alone (its result is a `validation_error`) and the others are posted."""

    events: list[dict[str, Any]] = Field(
        min_length=1,
        max_length=MAX_BATCH,
        description="Each an earn (`type: earn`, fields of POST /v1/earn) or a redemption "
        "(`type: redeem`, fields of POST /v1/redeem), plus its `id`.",
    )
    model_config = {"extra": "forbid"}


class EventResult(BaseModel):
    id: str | None = Field(description="The event's id (null if it had none).")
    status: Literal["posted", "duplicate", "rejected"]
    transaction_id: int | None = None
    member: str | None = None
    points: int | None = None
    balance: Balance | None = Field(default=None, description="The member's balance after it.")
    problem: Problem | None = Field(default=None, description="Why it was rejected.")


class BatchResult(BaseModel):
    posted: int
    duplicate: int
    rejected: int
    results: list[EventResult] = Field(description="One per event, in request order.")
