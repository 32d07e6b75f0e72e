"""HTTP endpoints for earning, redeeming and adjusting points."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.responses import Response

from app import errors
from app.api.answers import render
from app.api.deps import IdempotencyKey
from app.api.problems import error_responses
from app.points import service
from app.points.deps import Postings
from app.points.schemas import AdjustmentRequest, EarnRequest, PostingResponse, RedeemRequest
from app.programs.access import CanEarn, CanRedeem, IsAdmin

router = APIRouter(prefix="/v1", tags=["points"])

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
    responses=error_responses(
        *_WRITE_ERRORS,
        errors.CurrencyMismatch,
        errors.NothingToEarn,
        errors.OccurredAtOutOfRange,
        errors.AmountOutOfRange,
        body=True,
    ),
)
async def earn(
    body: EarnRequest, caller: CanEarn, key: IdempotencyKey, ledger: Postings
) -> Response:
    answer = await service.earn(ledger, program=caller.program, key=key, request=body)
    return render(answer, caller.program)


@router.post(
    "/redeem",
    status_code=201,
    response_model=PostingResponse,
    summary="Spend points",
    responses=error_responses(
        *_WRITE_ERRORS, errors.InsufficientPoints, errors.MemberNotFound, body=True
    ),
)
async def redeem(
    body: RedeemRequest, caller: CanRedeem, key: IdempotencyKey, ledger: Postings
) -> Response:
    answer = await service.redeem(ledger, program=caller.program, key=key, request=body)
    return render(answer, caller.program)


@router.post(
    "/adjustments",
    status_code=201,
    response_model=PostingResponse,
    summary="Correct a member's points (signed)",
    responses=error_responses(
        *_WRITE_ERRORS,
        errors.InsufficientPoints,
        errors.MemberNotFound,
        errors.AmountOutOfRange,
        body=True,
    ),
)
async def adjust(
    body: AdjustmentRequest, caller: IsAdmin, key: IdempotencyKey, ledger: Postings
) -> Response:
    answer = await service.adjust(ledger, program=caller.program, key=key, request=body)
    return render(answer, caller.program)
