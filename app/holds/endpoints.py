"""HTTP endpoints for holds (authorize -> capture / release)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Path
from starlette.responses import Response

from app import errors
from app.api.answers import render
from app.api.deps import Db, IdempotencyKey
from app.api.problems import error_responses
from app.holds import service
from app.holds.schemas import CaptureHold, CreateHold, Hold
from app.ledger.idempotency import Answer
from app.points.deps import Postings
from app.programs.access import CanRead, CanRedeem

router = APIRouter(prefix="/v1/holds", tags=["holds"])

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
    responses=error_responses(*_WRITE, errors.InsufficientPoints, errors.MemberNotFound, body=True),
)
async def create_hold(
    body: CreateHold, caller: CanRedeem, key: IdempotencyKey, ledger: Postings
) -> Response:
    answer = await service.create(ledger, program=caller.program, key=key, request=body)
    return render(answer, caller.program)


@router.post(
    "/{hold_id}/capture",
    response_model=Hold,
    summary="Capture a hold (all or part)",
    description="Captured points are redeemed; the rest of the hold goes back to available.",
    responses=error_responses(*_CLOSE_ERRORS, errors.CaptureExceedsHold, body=True),
)
async def capture_hold(
    hold_id: HoldId,
    caller: CanRedeem,
    key: IdempotencyKey,
    database: Db,
    body: Annotated[CaptureHold | None, Body()] = None,
) -> Response:
    request = body or CaptureHold()
    async with database.single() as db:
        answer = await service.capture(
            db, program=caller.program, key=key, hold_id=hold_id, request=request
        )
    return render(answer, caller.program)


@router.post(
    "/{hold_id}/release",
    response_model=Hold,
    summary="Release a hold",
    responses=error_responses(*_CLOSE_ERRORS),
)
async def release_hold(
    hold_id: HoldId, caller: CanRedeem, key: IdempotencyKey, database: Db
) -> Response:
    async with database.single() as db:
        answer = await service.release(db, program=caller.program, key=key, hold_id=hold_id)
    return render(answer, caller.program)


@router.get(
    "/{hold_id}",
    response_model=Hold,
    summary="A hold",
    responses=error_responses(errors.HoldNotFound),
)
async def get_hold(hold_id: HoldId, caller: CanRead, database: Db) -> Response:
    async with database.single() as db:
        view = await service.get(db, program=caller.program, hold_id=hold_id)
    return render(Answer(status=200, body=view), caller.program)
