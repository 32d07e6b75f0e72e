"""Member requests and responses."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, Field, StringConstraints

from app.domain.referrals import normalize_email, normalize_phone
from app.schemas import ExternalId, IsoDate, Metadata, Money, StrictModel


def _email(value: str) -> str:
    if normalize_email(value) is None:
        raise ValueError("must be an e-mail address")
    return value


def _phone(value: str) -> str:
    if normalize_phone(value) is None:
        raise ValueError("must be a phone number of at least 6 digits")
    return value


Email = Annotated[
    str, StringConstraints(strict=True, min_length=3, max_length=254), AfterValidator(_email)
]
Phone = Annotated[
    str, StringConstraints(strict=True, min_length=6, max_length=32), AfterValidator(_phone)
]
ReferralCode = Annotated[
    str,
    StringConstraints(strict=True, min_length=1, max_length=64),
    Field(
        description="Another member's referral code (spaces, dashes and case do not matter).",
        examples=["K7WX-9HCF"],
    ),
]


class EnrollMember(StrictModel):
    external_id: ExternalId
    birthday: IsoDate | None = None
    attributes: Metadata | None = None
    email: Email | None = Field(
        default=None,
        description="Kept as attributes.email; a referral from a member with the same address "
        "(case, spaces and +tags aside) is refused.",
    )
    phone: Phone | None = Field(
        default=None,
        description="Kept as attributes.phone; a referral from a member with the same number "
        "(spaces, punctuation and 00/+ aside) is refused.",
    )
    referral_code: ReferralCode | None = Field(
        default=None,
        description="Records a pending referral by the member with this code (same program); "
        "both get the program's bonus on this member's first qualifying order. Only counts "
        "when the member is new.",
    )

    def stored_attributes(self) -> dict[str, Any] | None:
        """The attributes to store: `attributes` with `email` and `phone` (which win)."""
        contact = {
            name: value for name, value in (("email", self.email), ("phone", self.phone)) if value
        }
        if not contact:
            return self.attributes
        return {**(self.attributes or {}), **contact}


class Balance(BaseModel):
    """A member's points: spendable now, waiting out the return window, reserved by holds;
    each with its money value at the program's point value (rounded down).

    `available` is net of points the member owes after a refund under the `allow_negative`
    return policy, so it can be below zero there."""

    available: int
    pending: int
    held: int
    available_value: Money
    pending_value: Money
    held_value: Money


class PendingLot(BaseModel):
    points: int = Field(description="Points still pending from this earn.")
    available_at: datetime = Field(description="When they become available.")
    order_id: str | None


class Member(BaseModel):
    external_id: str
    birthday: date | None
    attributes: dict[str, Any]
    created_at: datetime
    referral_code: str = Field(
        description="The member's own code to refer others (8 characters, unique, fixed)."
    )
    balance: Balance
    pending_lots: list[PendingLot] = Field(
        description="Pending points by earn, soonest first, with when each becomes available."
    )
