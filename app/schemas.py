"""Building blocks shared by the feature schemas: strict models and safe text types.

Everything here exists so that bad input is a 422 and never reaches PostgreSQL as something it
rejects with a 500: NUL characters and lone surrogates are refused, integers are strict (no
"12" or 12.0), dates and times are ISO 8601 text (no Unix times), and unknown fields are an error.
"""

from __future__ import annotations

import re
from datetime import date
from typing import Annotated

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
)

from app.ledger.limits import MAX_AMOUNT


def _storable(value: str) -> str:
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError("must be valid Unicode text") from exc
    return value


def _iso_text(shape: re.Pattern[str], example: str) -> BeforeValidator:
    """JSON has no date type: accept ISO 8601 text (or a date object from Python), never a
    number or numeric string, which pydantic would otherwise read as a Unix time."""

    def check(value: object) -> object:
        if isinstance(value, date) or (isinstance(value, str) and shape.match(value)):
            return value
        raise ValueError(f"must be ISO 8601 text like {example}")

    return BeforeValidator(check)


IsoDate = Annotated[
    date, Field(strict=False), _iso_text(re.compile(r"\d{4}-\d{2}-\d{2}\Z"), "2024-05-17")
]
IsoDateTime = Annotated[
    AwareDatetime,
    _iso_text(re.compile(r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}"), "2024-05-17T09:30:00Z"),
]


class StrictModel(BaseModel):
    """Request bodies: unknown fields are an error, not silently dropped."""

    model_config = ConfigDict(extra="forbid")


Text = Annotated[str, Field(strict=True), AfterValidator(_storable)]

ExternalId = Annotated[
    str,
    StringConstraints(strict=True, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:@+\-]{0,127}$"),
    Field(
        description="The caller's own customer id: 1-128 of A-Z a-z 0-9 . _ : @ + -",
        examples=["customer-42"],
    ),
]

OrderId = Annotated[
    str,
    StringConstraints(strict=True, min_length=1, max_length=128),
    AfterValidator(_storable),
    Field(examples=["order-1001"]),
]

Reason = Annotated[
    str, StringConstraints(strict=True, min_length=1, max_length=500), AfterValidator(_storable)
]

MetadataKey = Annotated[
    str, StringConstraints(min_length=1, max_length=64), AfterValidator(_storable)
]
MetadataValue = (
    Annotated[str, StringConstraints(strict=True, max_length=500), AfterValidator(_storable)]
    | Annotated[int, Field(strict=True, ge=-MAX_AMOUNT, le=MAX_AMOUNT)]
    | Annotated[bool, Field(strict=True)]
    | None
)
Metadata = Annotated[
    dict[MetadataKey, MetadataValue],
    Field(
        max_length=50,
        description="Up to 50 flat key/value pairs (strings, integers, booleans) kept on the "
        "transaction.",
        examples=[{"channel": "web"}],
    ),
]

PosId = Annotated[
    str,
    StringConstraints(strict=True, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:@+\-]{0,63}$"),
    Field(description="POS store or terminal id, kept on the transaction.", examples=["store-7"]),
]


class Money(BaseModel):
    """An amount of money in minor units (cents for EUR)."""

    amount: int
    currency: str
