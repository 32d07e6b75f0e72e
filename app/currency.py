"""ISO 4217 currencies and their minor-unit exponents (from the `iso4217` package)."""

from functools import cache

from iso4217 import Currency


@cache
def currency_exponent(code: str) -> int | None:
    """Digits after the decimal point for `code` (EUR 2, JPY 0, BHD 3); None if unknown
    or not a money currency (gold, test codes)."""
    try:
        exponent = Currency(code).exponent
    except ValueError:
        return None
    return exponent if isinstance(exponent, int) else None


def is_currency(code: str) -> bool:
    return currency_exponent(code) is not None
