"""Building blocks shared by the feature schemas: strict models and safe text types.

Everything here exists so that bad input is a 422 and never reaches PostgreSQL as something it
rejects with a 500: NUL characters and lone surrogates are refused, integers are strict (no
"12" or 12.0), dates and times are ISO 8601 text (no Unix times), and unknown fields are an error.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

from app.domain.types import MAX_AMOUNT, IsoDate, IsoDateTime, Text, storable

__all__ = ["IsoDate", "IsoDateTime", "Text"]


class StrictModel(BaseModel):
    """Request bodies: unknown fields are an error, not silently dropped."""

    model_config = ConfigDict(extra="forbid")


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
    AfterValidator(storable),
    Field(examples=["order-1001"]),
]

Reason = Annotated[
    str, StringConstraints(strict=True, min_length=1, max_length=500), AfterValidator(storable)
]

MetadataKey = Annotated[
    str, StringConstraints(min_length=1, max_length=64), AfterValidator(storable)
]
MetadataValue = (
    Annotated[str, StringConstraints(strict=True, max_length=500), AfterValidator(storable)]
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
