"""Idempotency keys for every write.

A write claims its key at the start of its database transaction and stores its response at the
end (`idempotency_claim` / `idempotency_complete` in SQL). Replaying a key returns the stored
response and posts nothing; the same key with a different request is `409
idempotency_conflict`. Failed requests store nothing, so a client may retry them. The hot
postings (earn, redeem, adjust) do claim, posting and completion inside one SQL function.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

import orjson
from fastapi import Depends, Header
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from starlette.responses import Response

from app import errors

REPLAY_HEADER = "Idempotent-Replayed"


async def idempotency_key(
    key: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key",
            description="Unique per program and write; replaying it returns the first result.",
            min_length=1,
            max_length=255,
            pattern=r"^[\x21-\x7E]+$",
        ),
    ] = None,
) -> str:
    if key is None:
        raise errors.IdempotencyKeyMissing("send an Idempotency-Key header with every write")
    return key


IdempotencyKey = Annotated[str, Depends(idempotency_key)]


@dataclass(frozen=True)
class StoredResponse:
    status: int
    body: Any
    replayed: bool

    def render(self) -> Response:
        content = self.body if isinstance(self.body, str) else orjson.dumps(self.body)
        headers = {REPLAY_HEADER: "true"} if self.replayed else None
        return Response(
            content, status_code=self.status, media_type="application/json", headers=headers
        )


async def claim(
    session: AsyncSession | AsyncConnection, program_id: int, key: str, fingerprint: bytes
) -> StoredResponse | None:
    """Claim `key` for this transaction; the stored response if it was already used."""
    row = (
        await session.execute(
            text(
                "SELECT o_claimed, o_status, o_response::text AS body"
                " FROM idempotency_claim(:program_id, :key, :fingerprint)"
            ),
            {"program_id": program_id, "key": key, "fingerprint": fingerprint},
        )
    ).one()
    if row.o_claimed:
        return None
    return StoredResponse(status=row.o_status, body=row.body, replayed=True)


async def complete(
    session: AsyncSession,
    program_id: int,
    key: str,
    status: int,
    body: Any,
    transaction_id: int | None = None,
) -> StoredResponse:
    """Store the response of a claimed key (in the same database transaction)."""
    stored = await session.scalar(
        text(
            "SELECT idempotency_complete(:program_id, :key, CAST(:status AS smallint),"
            " CAST(:body AS jsonb), :transaction_id)::text"
        ),
        {
            "program_id": program_id,
            "key": key,
            "status": status,
            "body": orjson.dumps(body).decode(),
            "transaction_id": transaction_id,
        },
    )
    return StoredResponse(status=status, body=stored, replayed=False)
