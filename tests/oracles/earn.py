"""How many points an order earns."""

from __future__ import annotations

from decimal import ROUND_FLOOR, Decimal


def base_rate_points(amount_minor: int, currency_exponent: int, base_rate: Decimal) -> int:
    """Points earned by an order at the program's base rate.

    The rate is points per *whole* currency unit; the amount is in minor units. The result is
    rounded down, because a program never awards a fraction of a point and never rounds a
    customer up into points they did not pay for.

    Worked example: base rate 1 point per euro, an order of EUR 12.99 (1299 cents, exponent 2)
    earns floor(1299 x 1 / 100) = 12 points. At 2.5 points per euro the same order earns
    floor(1299 x 2.5 / 100) = floor(32.475) = 32 points. At 10 points per yen (exponent 0),
    JPY 1500 earns 15000 points.

    Exact decimal arithmetic: no binary floating point ever touches an amount.
    """
    if amount_minor < 0:
        raise ValueError("order amount must not be negative")
    if base_rate < 0:
        raise ValueError("base rate must not be negative")
    whole_units = Decimal(amount_minor).scaleb(-currency_exponent)
    return int((whole_units * base_rate).to_integral_value(rounding=ROUND_FLOOR))
