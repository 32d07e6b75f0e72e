"""Worked examples of the base-rate earn rule (no database)."""

from decimal import Decimal

import pytest

from tests.oracles.earn import base_rate_points


@pytest.mark.parametrize(
    ("amount", "exponent", "rate", "expected", "why"),
    [
        (1299, 2, Decimal(1), 12, "EUR 12.99 at 1/EUR: 12.99 points, rounded down"),
        (1299, 2, Decimal("2.5"), 32, "EUR 12.99 at 2.5/EUR: 32.475 points, rounded down"),
        (100, 2, Decimal(1), 1, "exactly one euro earns exactly one point"),
        (99, 2, Decimal(1), 0, "99 cents earn nothing: no fractional points"),
        (1500, 0, Decimal(10), 15000, "JPY has no minor unit: 1500 yen at 10/yen"),
        (12345, 3, Decimal(1), 12, "BHD has three decimals: 12.345 dinars"),
        (0, 2, Decimal(5), 0, "an empty order earns nothing"),
        (2**53 - 1, 2, Decimal(1), (2**53 - 1) // 100, "the largest amount stays exact"),
        (1000, 2, Decimal("0.0001"), 0, "a tiny rate rounds down to zero"),
    ],
)
def test_base_rate_points(
    amount: int, exponent: int, rate: Decimal, expected: int, why: str
) -> None:
    assert base_rate_points(amount, exponent, rate) == expected, why


def test_negative_amount_is_refused() -> None:
    with pytest.raises(ValueError, match="negative"):
        base_rate_points(-1, 2, Decimal(1))
