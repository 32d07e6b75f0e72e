"""HTTP endpoints for orders: refunds and cancellations."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Path
from starlette.responses import Response

from app import errors
from app.api.answers import render
from app.api.deps import Db, IdempotencyKey
from app.api.problems import error_responses
from app.orders import service
from app.orders.schemas import CancelRequest, Order, RefundRequest, RefundResult
from app.programs.access import CanEarn, CanRead
from app.schemas import OrderId

router = APIRouter(prefix="/v1/orders", tags=["orders"])

OrderPath = Annotated[OrderId, Path(description="The order id given when it earned points")]
_ERRORS = (
    errors.IdempotencyKeyMissing,
    errors.IdempotencyConflict,
    errors.OrderNotFound,
    errors.OrderCancelled,
)


@router.post(
    "/{order_id}/refunds",
    status_code=201,
    response_model=RefundResult,
    summary="Refund (part of) an order",
    description=(
        "Takes back the points the order earned in proportion to the money refunded: pending "
        "points first, then available; what was already spent follows the program's return "
        "policy. Several partial refunds may add up to the order total, never more."
    ),
    responses=error_responses(
        *_ERRORS, errors.RefundExceedsOrder, errors.CurrencyMismatch, body=True
    ),
)
async def refund_order(
    order_id: OrderPath,
    body: RefundRequest,
    caller: CanEarn,
    key: IdempotencyKey,
    database: Db,
) -> Response:
    answer = await service.refund(
        database, program=caller.program, key=key, order_id=order_id, request=body
    )
    return render(answer, caller.program)


@router.post(
    "/{order_id}/cancel",
    status_code=201,
    response_model=RefundResult,
    summary="Cancel an order",
    description=(
        "Refunds what is left of the order (taking back its points) and gives back the points "
        "redeemed on it."
    ),
    responses=error_responses(*_ERRORS, body=True),
)
async def cancel_order(
    order_id: OrderPath,
    caller: CanEarn,
    key: IdempotencyKey,
    database: Db,
    body: Annotated[CancelRequest | None, Body()] = None,
) -> Response:
    answer = await service.cancel(
        database,
        program=caller.program,
        key=key,
        order_id=order_id,
        request=body or CancelRequest(),
    )
    return render(answer, caller.program)


@router.get(
    "/{order_id}",
    response_model=Order,
    summary="An order's points: earned, redeemed, refunded",
    responses=error_responses(errors.OrderNotFound),
)
async def get_order(order_id: OrderPath, caller: CanRead, database: Db) -> Order:
    async with database.single() as db:
        return await service.get(db, program=caller.program, order_id=order_id)
