"""Member requests and responses."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from pydantic import BaseModel

from app.schemas import ExternalId, IsoDate, Metadata, StrictModel


class EnrollMember(StrictModel):
    external_id: ExternalId
    birthday: IsoDate | None = None
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
