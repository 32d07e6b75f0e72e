"""Calling the ledger's `api_*` SQL functions: one statement, one round trip, one commit.

Each such function claims the idempotency key, does its posting and stores its response, and
returns `(o_replayed, o_status, o_body)`: the HTTP answer, rendered without re-encoding.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import asyncpg
import orjson
from sqlalchemy.ext.asyncio import AsyncConnection

from app import errors
from app.ledger.errors import translate_driver_error
from app.ledger.idempotency import StoredResponse


@dataclass(frozen=True)
class ApiCall:
    """`SELECT … FROM function($1, $2, …)` with the names of its parameters, in order."""

    sql: str
    params: tuple[str, ...]


def api_call(function: str, *params: str) -> ApiCall:
    """A call of `function`; a parameter spelled `name::type` is cast to that type."""
    args = ", ".join(
        f"CAST(${i} AS {p.split('::')[1]})" if "::" in p else f"${i}"
        for i, p in enumerate(params, start=1)
    )
    return ApiCall(
        sql=f"SELECT o_replayed, o_status, o_body::text AS body FROM {function}({args})",
        params=tuple(p.split("::")[0] for p in params),
    )


async def driver(conn: AsyncConnection) -> asyncpg.Connection:
    """The asyncpg connection under a pooled SQLAlchemy connection. A transaction begun on it
    (`async with driver.transaction()`) also holds the statements run through `conn` in
    autocommit mode, which starts none of its own."""
    raw = await conn.get_raw_connection()
    connection: asyncpg.Connection = raw.driver_connection
    return connection


async def _fetch(conn: AsyncConnection, method: str, sql: str, *args: Any) -> Any:
    """One statement on the pooled connection's asyncpg driver, directly: autocommit makes the
    statement its own transaction, there is no SQL compilation or result wrapping, and asyncpg
    caches the prepared statement per connection. Errors are translated like everywhere else."""
    connection = await driver(conn)
    try:
        return await getattr(connection, method)(sql, *args)
    except asyncpg.PostgresError as exc:
        raise translate_driver_error(exc) or exc from exc
    except (OSError, asyncpg.InterfaceError) as exc:
        await conn.invalidate()  # the pool must not hand this connection out again
        raise errors.ServiceUnavailable("the database is unavailable; retry shortly") from exc


async def fetch_value(conn: AsyncConnection, sql: str, *args: Any) -> Any:
    """The first column of the first row of one statement (see `_fetch`)."""
    return await _fetch(conn, "fetchval", sql, *args)


async def run(conn: AsyncConnection, call: ApiCall, params: dict[str, Any]) -> StoredResponse:
    """Run an `api_*` posting function: one round trip, one commit."""
    row = await _fetch(conn, "fetchrow", call.sql, *(params[name] for name in call.params))
    assert row is not None  # the api_* functions always return one row
    return StoredResponse(status=row["o_status"], body=row["body"], replayed=row["o_replayed"])


def as_jsonb(value: dict[str, Any] | None) -> str:
    return orjson.dumps(value or {}).decode()
