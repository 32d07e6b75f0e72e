"""Field types shared by the rules and the API: amounts, text, dates, rule fields.

Every definition is a strict pydantic model: unknown fields are an error, integers are
integers (no "12"), decimals are finite and bounded so that no rule can smuggle in NaN,
infinity or a 10,000-digit multiplier, and every amount fits in a JSON number exactly: at most
2^53 - 1 (`MAX_AMOUNT`), the largest integer every JSON client (JavaScript included) carries
without rounding. The ledger refuses balances beyond it too (a CHECK on `accounts`).
"""

from __future__ import annotations

import re
from datetime import date, time
from decimal import Decimal
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

from app.domain.dates import check_timezone

MAX_AMOUNT = 2**53 - 1


class RuleModel(BaseModel):
    """Base of every rule definition, input and result: immutable, unknown fields refused."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def _printable(value: str) -> str:
    if any(ord(char) < 32 or ord(char) == 127 for char in value):
        raise ValueError("must not contain control characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError("must be valid Unicode text") from exc
    return value


def _time_text(value: object) -> object:
    """Times of day are "HH:MM" or "HH:MM:SS" text (or a `time`), never a number of seconds."""
    if isinstance(value, time) or (
        isinstance(value, str) and re.fullmatch(r"\d{2}:\d{2}(:\d{2})?", value)
    ):
        return value
    raise ValueError('must be a time of day like "09:30"')


def _naive(value: time) -> time:
    if value.tzinfo is not None:
        raise ValueError("is a wall-clock time in the program's time zone: give no offset")
    return value


# An id chosen by the program: "base", "double-weekend-2026", "cat:coffee".
RuleId = Annotated[
    str, StringConstraints(strict=True, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:\-]{0,63}$")
]
# A caller-side name: SKU, category, store id, tier code.
Label = Annotated[
    str, StringConstraints(strict=True, min_length=1, max_length=128), AfterValidator(_printable)
]
Points = Annotated[int, Field(strict=True, ge=0, le=MAX_AMOUNT)]
SignedAmount = Annotated[int, Field(strict=True, ge=-MAX_AMOUNT, le=MAX_AMOUNT)]
MinorUnits = Annotated[int, Field(strict=True, ge=0, le=MAX_AMOUNT)]
Count = Annotated[int, Field(strict=True, ge=0, le=MAX_AMOUNT)]
# A factor applied to points: 0.5 (half points) to 1000, at most six decimals.
Multiplier = Annotated[Decimal, Field(gt=0, le=1000, decimal_places=6, allow_inf_nan=False)]
# Points per whole currency unit: 0 to 1,000,000, at most six decimals.
Rate = Annotated[Decimal, Field(ge=0, le=1_000_000, decimal_places=6, allow_inf_nan=False)]
TimeOfDay = Annotated[time, BeforeValidator(_time_text), AfterValidator(_naive)]
Timezone = Annotated[
    str,
    StringConstraints(strict=True),
    AfterValidator(check_timezone),
    Field(description="IANA time zone name", examples=["Europe/Paris"]),
]


# Amounts of points and money (minor units): integers within what every JSON client carries.
PositivePoints = Annotated[int, Field(strict=True, gt=0, le=MAX_AMOUNT)]
SignedPoints = Annotated[int, Field(strict=True, ge=-MAX_AMOUNT, le=MAX_AMOUNT)]


def storable(value: str) -> str:
    """Text PostgreSQL can store: no NUL characters, no lone surrogates."""
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
    date,
    Field(strict=False),
    _iso_text(re.compile(r"\d{4}-\d{2}-\d{2}\Z"), "2024-05-17"),
]
IsoDateTime = Annotated[
    AwareDatetime,
    _iso_text(re.compile(r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}"), "2024-05-17T09:30:00Z"),
]
Text = Annotated[str, Field(strict=True), AfterValidator(storable)]
