"""What points are worth in money."""

from __future__ import annotations

from decimal import ROUND_FLOOR, Decimal


def points_value(points: int, point_value: Decimal) -> int:
    """Money value of `points` in minor units, rounded down (never promise a cent too much).

    Worked example: at 1 cent per point, 1,250 points are worth 1250 cents (EUR 12.50); at
    0.5 cents per point, 1,251 points are worth floor(625.5) = 625 cents. A negative balance
    (a member in debt) is worth a negative amount, rounded towards minus infinity.
    """
    return int((Decimal(points) * point_value).to_integral_value(rounding=ROUND_FLOOR))
