"""Holds: points reserved at checkout (available -> held), then captured (held ->
redemption, the rest back to available) or released (held -> available).

A hold nobody closes is released when it expires: by the worker, and lazily by the next read
or write of that member, so correctness never depends on the worker being up.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from app import errors
from app.holds.schemas import CaptureHold, CreateHold, Hold
from app.ledger import posting
from app.ledger.fingerprint import fingerprint
from app.ledger.idempotency import StoredResponse
from app.programs.models import Program

_CREATE = posting.api_call(
    "api_hold_create",
    "program_id",
    "key",
    "fingerprint",
    "member",
    "points",
    "order_id",
    "expires_at",
)
_CLOSE = posting.api_call(
    "api_hold_close", "program_id", "key", "fingerprint", "hold_id", "capture"
)


async def create(
    conn: AsyncConnection, *, program: Program, key: str, request: CreateHold
) -> StoredResponse:
    ttl = request.expires_in or program.hold_ttl_seconds
    return await posting.run(
        conn,
        _CREATE,
        {
            "program_id": program.id,
            "key": key,
            "fingerprint": fingerprint("hold", request.model_dump(mode="json")),
            "member": request.member,
            "points": request.points,
            "order_id": request.order_id,
            "expires_at": datetime.now(UTC) + timedelta(seconds=ttl),
        },
    )


async def capture(
    conn: AsyncConnection, *, program: Program, key: str, hold_id: int, request: CaptureHold
) -> StoredResponse:
    print_ = fingerprint("capture", {"hold_id": hold_id, **request.model_dump(mode="json")})
    return await _close(conn, program, key, print_, hold_id, request.points)


async def release(
    conn: AsyncConnection, *, program: Program, key: str, hold_id: int
) -> StoredResponse:
    return await _close(
        conn, program, key, fingerprint("release", {"hold_id": hold_id}), hold_id, 0
    )


async def _close(
    conn: AsyncConnection,
    program: Program,
    key: str,
    request_print: bytes,
    hold_id: int,
    capture: int | None,
) -> StoredResponse:
    return await posting.run(
        conn,
        _CLOSE,
        {
            "program_id": program.id,
            "key": key,
            "fingerprint": request_print,
            "hold_id": hold_id,
            "capture": capture,
        },
    )


async def get(conn: AsyncConnection, *, program: Program, hold_id: int) -> Hold:
    member_id = await conn.scalar(
        text("SELECT member_id FROM holds WHERE id = :id AND program_id = :program_id"),
        {"id": hold_id, "program_id": program.id},
    )
    if member_id is None:
        raise errors.HoldNotFound(f"no hold {hold_id} in this program")
    await conn.execute(
        text("SELECT member_maintain(:program_id, :member_id)"),
        {"program_id": program.id, "member_id": member_id},
    )
    view = await conn.scalar(text("SELECT hold_view(:id)::text"), {"id": hold_id})
    return Hold.model_validate_json(view)
