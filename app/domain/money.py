"""What points are worth in money."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import ROUND_FLOOR, Decimal
from typing import Any

# the figures of a member's balance that have a money value
VALUED_FIGURES = ("available", "pending", "held")


def points_value(points: int, point_value: Decimal) -> int:
    """Money value of `points` in minor units, rounded down (never promise a cent too much).

    Worked example: at 1 cent per point, 1,250 points are worth 1250 cents (EUR 12.50); at
    0.5 cents per point, 1,251 points are worth floor(625.5) = 625 cents. A negative balance
    (a member in debt) is worth a negative amount, rounded towards minus infinity.
    """
    return int((Decimal(points) * point_value).to_integral_value(rounding=ROUND_FLOOR))


def valued_balance(
    balance: Mapping[str, Any], point_value: Decimal, currency: str
) -> dict[str, Any]:
    """A balance in points (as the ledger keeps it) with the money value of each figure at the
    program's point value, rounded down as `points_value` does.

    Worked example: at 0.5 cents per point, {"available": 1251, "held": 0} becomes
    {"available": 1251, "held": 0, "available_value": {"amount": 625, "currency": "EUR"},
    "held_value": {"amount": 0, "currency": "EUR"}}.
    """
    return {
        **balance,
        **{
            f"{figure}_value": {
                "amount": points_value(int(balance[figure]), point_value),
                "currency": currency,
            }
            for figure in VALUED_FIGURES
            if figure in balance
        },
    }
