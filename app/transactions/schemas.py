"""Ledger transactions as the API shows them."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from app.schemas import Reason, StrictModel


class Entry(BaseModel):
    """One leg: which account moved by how much (signed)."""

    account_id: int
    owner: str = Field(description="The member's external id, or `program`.")
    account: str = Field(description="Account kind: available, pending, held, issuance, …")
    asset: str
    amount: int


class Transaction(BaseModel):
    id: int
    kind: str
    member: str | None = Field(description="External id of the member the transaction is about.")
    points: int = Field(description="Change of the member's spendable points (signed).")
    occurred_at: datetime
    recorded_at: datetime
    order_id: str | None
    reason: str | None
    metadata: dict[str, Any]
    reverses: int | None = Field(description="Id of the transaction this one reverses.")
    reversed_by: int | None = Field(description="Id of the transaction that reversed this one.")
    entries: list[Entry]


class HistoryItem(BaseModel):
    id: int
    kind: str
    points: int = Field(description="Signed, as the member sees it: earn +, redeem -.")
    occurred_at: datetime
    recorded_at: datetime
    order_id: str | None
    metadata: dict[str, Any]


class HistoryPage(BaseModel):
    items: list[HistoryItem]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next (older) page.")


class ReverseRequest(StrictModel):
    reason: Reason | None = None
