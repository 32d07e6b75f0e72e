"""Member requests and responses."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any

from pydantic import BaseModel, Field

from app.schemas import ExternalId, Metadata, StrictModel


class EnrollMember(StrictModel):
    external_id: ExternalId
    birthday: Annotated[date, Field(strict=False)] | None = None
    attributes: Metadata | None = None


class Balance(BaseModel):
    """A member's points: spendable now, waiting out the return window, reserved by holds."""

    available: int
    pending: int
    held: int


class Member(BaseModel):
    external_id: str
    birthday: date | None
    attributes: dict[str, Any]
    created_at: datetime
    balance: Balance
