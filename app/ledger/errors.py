"""Translate database errors raised by the ledger's SQL into API errors.

The PL/pgSQL functions raise custom SQLSTATEs (see the first migration); constraint violations
that a client can provoke map to 4xx as well. Anything else stays a genuine 500.
"""

from __future__ import annotations

from sqlalchemy.exc import DBAPIError

from app import errors

BY_SQLSTATE: dict[str, type[errors.ApiError]] = {
    "PL100": errors.InsufficientPoints,
    "PL101": errors.IdempotencyConflict,
    "PL102": errors.MemberNotFound,
    "PL103": errors.TransactionNotFound,
    "PL104": errors.AlreadyReversed,
    "PL105": errors.NotReversible,
    "PL106": errors.HoldNotFound,
    "PL107": errors.HoldAlreadyCaptured,
    "PL108": errors.HoldAlreadyReleased,
    "PL109": errors.HoldExpired,
    "PL110": errors.CaptureExceedsHold,
    "PL111": errors.OrderNotFound,
    "PL112": errors.OrderAlreadyEarned,
    "PL113": errors.OrderMemberMismatch,
    "PL114": errors.OrderCancelled,
    "PL115": errors.RefundExceedsOrder,
    "PL116": errors.CurrencyMismatch,
    "PL117": errors.SameMember,
    "22003": errors.AmountOutOfRange,  # numeric_value_out_of_range: a sum beyond bigint
}

_BY_CONSTRAINT: dict[str, type[errors.ApiError]] = {
    "transactions_reverses_id_key": errors.AlreadyReversed,
    "no_overdraft": errors.InsufficientPoints,
}


def _driver_error(exc: DBAPIError) -> BaseException | None:
    orig = exc.orig
    return getattr(orig, "__cause__", None) or orig


def sqlstate(exc: DBAPIError) -> str | None:
    for candidate in (_driver_error(exc), exc.orig):
        code = getattr(candidate, "sqlstate", None) or getattr(candidate, "pgcode", None)
        if code:
            return str(code)
    return None


# Connection exceptions (08), operator intervention / shutdown (57P), insufficient resources
# (53): the database is unreachable or going away; the client should retry later.
_UNAVAILABLE_PREFIXES = ("08", "57P", "53")


def translate(exc: DBAPIError) -> errors.ApiError | None:
    """The API error for a database error a client caused or should retry, or None for a
    real fault."""
    if exc.connection_invalidated:
        return errors.ServiceUnavailable("the database is unavailable; retry shortly")
    return translate_driver_error(_driver_error(exc), sqlstate(exc))


def translate_driver_error(
    driver: BaseException | None, code: str | None = None
) -> errors.ApiError | None:
    """The same translation for an error raised by asyncpg itself (the hot path's raw calls)."""
    code = code or getattr(driver, "sqlstate", None)
    if code and code.startswith(_UNAVAILABLE_PREFIXES):
        return errors.ServiceUnavailable("the database is unavailable; retry shortly")
    constraint = getattr(driver, "constraint_name", None)
    if constraint in _BY_CONSTRAINT:
        return _BY_CONSTRAINT[constraint]()
    if code in BY_SQLSTATE:
        detail = getattr(driver, "detail", None)
        return BY_SQLSTATE[code](detail or None)
    return None
