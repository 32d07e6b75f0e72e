"""Key scopes, cursors, fingerprints, currencies: pure helpers (no database)."""

import pytest

from app import errors
from app.currency import currency_exponent
from app.ledger.idempotency import fingerprint
from app.programs.keys import hash_key, new_key
from app.programs.models import ApiKey, Scope
from app.programs.service import ProgramSetupError, parse_scopes
from app.transactions.service import decode_cursor, encode_cursor


def test_admin_implies_every_scope() -> None:
    admin = ApiKey(id=1, program_id=1, prefix="x", scopes=frozenset({"admin"}))
    assert all(admin.allows(scope) for scope in Scope)


def test_a_scope_allows_only_itself() -> None:
    earn_only = ApiKey(id=1, program_id=1, prefix="x", scopes=frozenset({"earn"}))
    assert earn_only.allows(Scope.EARN)
    assert not earn_only.allows(Scope.REDEEM)
    assert not earn_only.allows(Scope.ADMIN)


def test_parse_scopes_accepts_commas_and_repeats() -> None:
    assert parse_scopes(["earn,read", "earn"]) == ["earn", "read"]
    with pytest.raises(ProgramSetupError, match="unknown scope"):
        parse_scopes(["spend"])
    with pytest.raises(ProgramSetupError):
        parse_scopes([""])


def test_keys_are_random_and_hashed() -> None:
    first, prefix = new_key()
    second, _ = new_key()
    assert first != second
    assert first.startswith(f"plk_{prefix}_")
    assert len(hash_key(first)) == 32
    assert hash_key(first) != hash_key(second)


def test_cursor_round_trip_and_garbage() -> None:
    assert decode_cursor(encode_cursor(12345)) == 12345
    for garbage in ("", "!!!", "dDp4", encode_cursor(1)[:-1] + "$"):
        with pytest.raises(errors.InvalidCursor):
            decode_cursor(garbage)


def test_fingerprint_ignores_key_order_but_not_values() -> None:
    assert fingerprint("earn", {"a": 1, "b": 2}) == fingerprint("earn", {"b": 2, "a": 1})
    assert fingerprint("earn", {"a": 1}) != fingerprint("earn", {"a": 2})
    assert fingerprint("earn", {"a": 1}) != fingerprint("redeem", {"a": 1})


def test_currency_exponents() -> None:
    assert currency_exponent("EUR") == 2
    assert currency_exponent("JPY") == 0
    assert currency_exponent("BHD") == 3
    assert currency_exponent("XAU") is None  # gold is not money with minor units
    assert currency_exponent("ABC") is None
