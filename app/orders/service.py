"""Refunds and cancellations.

A refund of R out of an order of A takes back, in total over all refunds so far,
floor(earned x refunded / A) points: partial refunds add up exactly to a full one. Points come
back from the order's pending points first, then from available; if the member has already
spent them, the program's return policy decides: `cap_at_zero` takes what is there and records
the rest as written off, `allow_negative` puts the member in debt, which later credits repay.
A cancellation refunds the rest of the order and gives back the points redeemed on it.

When the program has a referral policy, the refund (or cancellation) and the clawback of a
referral bonus the order earned (`app.referrals.service.after_refund`) share one database
transaction; a replayed key returns the stored response and claws back nothing again.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from app import errors
from app.ledger import posting
from app.ledger.fingerprint import fingerprint
from app.ledger.idempotency import StoredResponse
from app.orders.schemas import CancelRequest, Order, OrderState, RefundRequest
from app.programs.models import Program
from app.referrals import service as referrals

_REFUND = posting.api_call(
    "api_order_refund",
    "program_id",
    "key",
    "fingerprint",
    "order_id",
    "amount",
    "currency",
    "reason",
    "cancel",
)


async def refund(
    conn: AsyncConnection, *, program: Program, key: str, order_id: str, request: RefundRequest
) -> StoredResponse:
    if request.currency != program.currency:
        raise errors.CurrencyMismatch(f"the program counts in {program.currency}")
    payload = {"order_id": order_id, **request.model_dump(mode="json")}
    return await _refund(
        conn,
        program,
        {
            "program_id": program.id,
            "key": key,
            "fingerprint": fingerprint("refund", payload),
            "order_id": order_id,
            "amount": request.amount,
            "currency": request.currency,
            "reason": request.reason,
            "cancel": False,
        },
    )


async def cancel(
    conn: AsyncConnection, *, program: Program, key: str, order_id: str, request: CancelRequest
) -> StoredResponse:
    payload = {"order_id": order_id, **request.model_dump(mode="json")}
    return await _refund(
        conn,
        program,
        {
            "program_id": program.id,
            "key": key,
            "fingerprint": fingerprint("cancel", payload),
            "order_id": order_id,
            "amount": None,
            "currency": None,
            "reason": request.reason,
            "cancel": True,
        },
    )


async def _refund(
    conn: AsyncConnection, program: Program, params: dict[str, Any]
) -> StoredResponse:
    """`api_order_refund`: one statement, or, when the program has referrals, one transaction
    with the clawback of the order's referral bonus (under the referee's lock, still held)."""
    if program.referral_policy is None:
        return await posting.run(conn, _REFUND, params)
    driver = await posting.driver(conn)
    async with driver.transaction():
        stored = await posting.run(conn, _REFUND, params)
        if stored.replayed:
            return stored
        clawback = await referrals.after_refund(conn, program=program, order_id=params["order_id"])
        if clawback is None:
            return stored
        return await referrals.with_current_balance(
            conn, program=program, key=params["key"], stored=stored, member_id=clawback.referee_id
        )


async def get(conn: AsyncConnection, *, program: Program, order_id: str) -> Order:
    row = (
        await conn.execute(
            text(
                "SELECT o.*, m.external_id FROM orders o JOIN members m ON m.id = o.member_id"
                " WHERE o.program_id = :program_id AND o.order_id = :order_id"
            ),
            {"program_id": program.id, "order_id": order_id},
        )
    ).one_or_none()
    if row is None:
        raise errors.OrderNotFound(f"no order {order_id!r} in this program")
    return Order(
        order_id=row.order_id,
        member=row.external_id,
        currency=row.currency,
        created_at=row.created_at,
        state=OrderState(
            amount=row.amount,
            refunded_amount=row.refunded_amount,
            earned_points=row.earned_points,
            points_taken_back=row.points_taken_back,
            points_written_off=row.points_written_off,
            redeemed_points=row.redeemed_points,
            redeemed_returned=row.redeemed_returned,
            cancelled=row.cancelled_at is not None,
        ),
    )
