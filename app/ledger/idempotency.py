"""Idempotency: what "the same request" is, and the answer kept under a key.

Every write that reaches the ledger keeps its answer under its idempotency key, in the same
database transaction as its posting: a success (status and body) or a refusal for a business
reason (no status; the problem's stable `code` and `detail`). Replaying the key returns that
answer and posts nothing, every time: a redeem declined for insufficient_points stays declined
even after the member has earned more (as Stripe and TigerBeetle's `id_already_failed` do).
The same key with a different request is 409 idempotency_conflict, and is not kept. Requests
refused before they reach the ledger (a malformed body, a missing key) keep nothing.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import orjson

from app import errors
from app.db import Transaction


def fingerprint(operation: str, payload: Any) -> bytes:
    """SHA-256 of the operation name and the request's canonical JSON (sorted keys)."""
    canonical = orjson.dumps(payload, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS)
    return hashlib.sha256(operation.encode() + b"\n" + canonical).digest()


@dataclass(frozen=True)
class Answer:
    """The answer kept under an idempotency key: `status` and `body` of a success, or (status
    None) a refusal whose body is {code, detail}. `replayed`: this request found it stored."""

    status: int | None
    body: Any
    replayed: bool = False

    @property
    def refused(self) -> bool:
        return self.status is None

    def error(self) -> errors.ApiError:
        """The refusal as an API error (only for a refusal)."""
        assert self.refused
        return errors.by_code(str(self.body.get("code")))(self.body.get("detail"))

    def raise_if_refused(self) -> Answer:
        if self.refused:
            raise self.error()
        return self


async def claim(db: Transaction, program_id: int, key: str, print_: bytes) -> Answer | None:
    """Claim `key` for the write about to happen in this transaction (`ledger_claim`): None
    when the caller should go on, else the answer kept under the key (a replay). A concurrent
    request with the same key waits until the first commits."""
    row = await db.fetchrow(
        "SELECT o_claimed, o_status, o_body FROM ledger_claim($1, $2, $3)",
        program_id,
        key,
        print_,
    )
    assert row is not None
    if row["o_claimed"]:
        return None
    return Answer(status=row["o_status"], body=row["o_body"], replayed=True)


async def complete(
    db: Transaction,
    program_id: int,
    key: str,
    status: int,
    body: Any,
    transaction_id: int | None = None,
) -> Answer:
    """Keep the answer of a claimed key, in the same transaction (`ledger_answer`)."""
    stored = await db.fetchval(
        "SELECT ledger_answer($1, $2, $3::smallint, $4::jsonb, $5)",
        program_id,
        key,
        status,
        body,
        transaction_id,
    )
    return Answer(status=status, body=stored)
