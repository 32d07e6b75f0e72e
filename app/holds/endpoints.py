"""HTTP endpoints for holds (authorize -> capture / release)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Depends, Path
from sqlalchemy.ext.asyncio import AsyncConnection
from starlette.responses import Response

from app import errors
from app.db import get_autocommit_connection
from app.holds import service
from app.holds.schemas import CaptureHold, CreateHold, Hold
from app.ledger.idempotency import IdempotencyKey
from app.programs.auth import CanRead, CanRedeem

router = APIRouter(prefix="/v1/holds", tags=["holds"])

Connection = Annotated[AsyncConnection, Depends(get_autocommit_connection)]
HoldId = Annotated[int, Path(ge=1, le=2**63 - 1)]
_WRITE = (errors.IdempotencyKeyMissing, errors.IdempotencyConflict)
_CLOSE_ERRORS = (
    *_WRITE,
    errors.HoldNotFound,
    errors.HoldAlreadyCaptured,
    errors.HoldAlreadyReleased,
    errors.HoldExpired,
)


@router.post(
    "",
    status_code=201,
    response_model=Hold,
    summary="Reserve points at checkout",
    description=(
        "Moves points from available to held until captured, released, or expired "
        "(`expires_in` seconds, default the program's hold TTL)."
    ),
    responses=errors.error_responses(
        *_WRITE, errors.InsufficientPoints, errors.MemberNotFound, body=True
    ),
)
async def create_hold(
    body: CreateHold, caller: CanRedeem, key: IdempotencyKey, conn: Connection
) -> Response:
    return (await service.create(conn, program=caller.program, key=key, request=body)).render()


@router.post(
    "/{hold_id}/capture",
    response_model=Hold,
    summary="Capture a hold (all or part)",
    description="Captured points are redeemed; the rest of the hold goes back to available.",
    responses=errors.error_responses(*_CLOSE_ERRORS, errors.CaptureExceedsHold, body=True),
)
async def capture_hold(
    hold_id: HoldId,
    caller: CanRedeem,
    key: IdempotencyKey,
    conn: Connection,
    body: Annotated[CaptureHold | None, Body()] = None,
) -> Response:
    request = body or CaptureHold()
    stored = await service.capture(
        conn, program=caller.program, key=key, hold_id=hold_id, request=request
    )
    return stored.render()


@router.post(
    "/{hold_id}/release",
    response_model=Hold,
    summary="Release a hold",
    responses=errors.error_responses(*_CLOSE_ERRORS),
)
async def release_hold(
    hold_id: HoldId, caller: CanRedeem, key: IdempotencyKey, conn: Connection
) -> Response:
    return (await service.release(conn, program=caller.program, key=key, hold_id=hold_id)).render()


@router.get(
    "/{hold_id}",
    response_model=Hold,
    summary="A hold",
    responses=errors.error_responses(errors.HoldNotFound),
)
async def get_hold(hold_id: HoldId, caller: CanRead, conn: Connection) -> Hold:
    return await service.get(conn, program=caller.program, hold_id=hold_id)
