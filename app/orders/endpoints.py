"""HTTP endpoints for orders: refunds and cancellations."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Depends, Path
from sqlalchemy.ext.asyncio import AsyncConnection
from starlette.responses import Response

from app import errors
from app.db import get_autocommit_connection
from app.ledger.idempotency import IdempotencyKey
from app.orders import service
from app.orders.schemas import CancelRequest, Order, RefundRequest, RefundResult
from app.programs.auth import CanEarn, CanRead
from app.schemas import OrderId

router = APIRouter(prefix="/v1/orders", tags=["orders"])

Connection = Annotated[AsyncConnection, Depends(get_autocommit_connection)]
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
    responses=errors.error_responses(
        *_ERRORS, errors.RefundExceedsOrder, errors.CurrencyMismatch, body=True
    ),
)
async def refund_order(
    order_id: OrderPath,
    body: RefundRequest,
    caller: CanEarn,
    key: IdempotencyKey,
    conn: Connection,
) -> Response:
    stored = await service.refund(
        conn, program=caller.program, key=key, order_id=order_id, request=body
    )
    return stored.render()


@router.post(
    "/{order_id}/cancel",
    status_code=201,
    response_model=RefundResult,
    summary="Cancel an order",
    description=(
        "Refunds what is left of the order (taking back its points) and gives back the points "
        "redeemed on it."
    ),
    responses=errors.error_responses(*_ERRORS, body=True),
)
async def cancel_order(
    order_id: OrderPath,
    caller: CanEarn,
    key: IdempotencyKey,
    conn: Connection,
    body: Annotated[CancelRequest | None, Body()] = None,
) -> Response:
    stored = await service.cancel(
        conn, program=caller.program, key=key, order_id=order_id, request=body or CancelRequest()
    )
    return stored.render()


@router.get(
    "/{order_id}",
    response_model=Order,
    summary="An order's points: earned, redeemed, refunded",
    responses=errors.error_responses(errors.OrderNotFound),
)
async def get_order(order_id: OrderPath, caller: CanRead, conn: Connection) -> Order:
    return await service.get(conn, program=caller.program, order_id=order_id)
