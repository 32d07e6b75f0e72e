"""Points moved between two members of one program."""

from __future__ import annotations

from pydantic import BaseModel

from app.domain.types import PositivePoints
from app.members.schemas import Balance
from app.schemas import ExternalId, Reason, StrictModel


class TransferRequest(StrictModel):
    from_member: ExternalId
    to_member: ExternalId
    points: PositivePoints
    reason: Reason | None = None


class TransferResult(BaseModel):
    transaction_id: int
    from_member: str
    to_member: str
    points: int
    from_balance: Balance
    to_balance: Balance
