"""HTTP endpoints for earning, redeeming and adjusting points."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends
from sqlalchemy.ext.asyncio import AsyncConnection
from starlette.responses import Response

from app import errors
from app.db import get_autocommit_connection
from app.ledger.idempotency import IdempotencyKey
from app.points import service
from app.points.schemas import AdjustmentRequest, EarnRequest, PostingResponse, RedeemRequest
from app.programs.auth import CanEarn, CanRedeem, IsAdmin

router = APIRouter(prefix="/v1", tags=["points"])

Connection = Annotated[AsyncConnection, Depends(get_autocommit_connection)]
_WRITE_ERRORS = (errors.IdempotencyKeyMissing, errors.IdempotencyConflict)


@router.post(
    "/earn",
    status_code=201,
    response_model=PostingResponse,
    summary="Award points",
    description=(
        "Awards `points`, or the points an `order` earns at the program's base rate (points "
        "per whole currency unit, rounded down). An unknown member is enrolled."
    ),
    responses=errors.error_responses(
        *_WRITE_ERRORS,
        errors.CurrencyMismatch,
        errors.NothingToEarn,
        errors.OccurredAtOutOfRange,
        errors.AmountOutOfRange,
        body=True,
    ),
)
async def earn(
    body: EarnRequest, caller: CanEarn, key: IdempotencyKey, conn: Connection
) -> Response:
    return (await service.earn(conn, program=caller.program, key=key, request=body)).render()


@router.post(
    "/redeem",
    status_code=201,
    response_model=PostingResponse,
    summary="Spend points",
    responses=errors.error_responses(
        *_WRITE_ERRORS, errors.InsufficientPoints, errors.MemberNotFound, body=True
    ),
)
async def redeem(
    body: RedeemRequest, caller: CanRedeem, key: IdempotencyKey, conn: Connection
) -> Response:
    return (await service.redeem(conn, program=caller.program, key=key, request=body)).render()


@router.post(
    "/adjustments",
    status_code=201,
    response_model=PostingResponse,
    summary="Correct a member's points (signed)",
    responses=errors.error_responses(
        *_WRITE_ERRORS,
        errors.InsufficientPoints,
        errors.MemberNotFound,
        errors.AmountOutOfRange,
        body=True,
    ),
)
async def adjust(
    body: AdjustmentRequest, caller: IsAdmin, key: IdempotencyKey, conn: Connection
) -> Response:
    return (await service.adjust(conn, program=caller.program, key=key, request=body)).render()
