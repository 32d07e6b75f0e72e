"""Calling the ledger's `api_*` SQL functions: one statement, one round trip, one commit.

Each such function claims the idempotency key, does its posting and stores its response, and
returns `(o_replayed, o_status, o_body)`: the HTTP answer, rendered without re-encoding.
"""

from __future__ import annotations

from typing import Any

import orjson
from sqlalchemy import TextClause, text
from sqlalchemy.ext.asyncio import AsyncConnection

from app.ledger.idempotency import StoredResponse


def api_call(function: str, *params: str) -> TextClause:
    """`SELECT … FROM function(:p1, :p2, …)`; a param spelled `name::type` is cast."""
    args = ", ".join(
        f"CAST(:{p.split('::')[0]} AS {p.split('::')[1]})" if "::" in p else f":{p}" for p in params
    )
    return text(f"SELECT o_replayed, o_status, o_body::text AS body FROM {function}({args})")


async def run(
    conn: AsyncConnection, statement: TextClause, params: dict[str, Any]
) -> StoredResponse:
    row = (await conn.execute(statement, params)).one()
    return StoredResponse(status=row.o_status, body=row.body, replayed=row.o_replayed)


def as_jsonb(value: dict[str, Any] | None) -> str:
    return orjson.dumps(value or {}).decode()
