"""Refunds and cancellations: one call of `orders_refund` (app/orders/sql), the policy from here.

A refund of R out of an order of A takes back, in total over all refunds so far,
floor(earned x refunded / A) points: partial refunds add up exactly to a full one. Points come
back from the order's pending points first, then from available; if the member has already
spent them, the program's return policy decides: `cap_at_zero` takes what is there and records
the rest as written off, `allow_negative` puts the member in debt, which later credits repay.
A cancellation refunds the rest of the order and gives back the points redeemed on it (a new
lot, lapsing by the program's expiry policy). Refusals are kept as the answer, like postings.

When the order was a referee's qualifying order, the refund and the clawback of the referral
bonus (`app.referrals.service.clawback_after_refund`) share one database transaction, which
locks both members first; a replayed key returns the kept answer and claws back nothing again.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from app import errors
from app.db import Database, Session
from app.domain.dates import local_date
from app.ledger.idempotency import Answer, fingerprint
from app.orders.schemas import CancelRequest, Order, OrderState, RefundRequest
from app.points import planning
from app.programs.models import Program
from app.referrals import repository as referral_records
from app.referrals import service as referrals

_REFUND = (
    "SELECT o_replayed, o_status, o_body, o_member_id"
    " FROM orders_refund($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
)


async def refund(
    database: Database, *, program: Program, key: str, order_id: str, request: RefundRequest
) -> Answer:
    payload = {"order_id": order_id, **request.model_dump(mode="json")}
    return await _refund(
        database,
        program,
        key,
        fingerprint("refund", payload),
        order_id,
        amount=request.amount,
        currency=request.currency,
        reason=request.reason,
        cancel=False,
    )


async def cancel(
    database: Database, *, program: Program, key: str, order_id: str, request: CancelRequest
) -> Answer:
    payload = {"order_id": order_id, **request.model_dump(mode="json")}
    return await _refund(
        database,
        program,
        key,
        fingerprint("cancel", payload),
        order_id,
        amount=None,
        currency=None,
        reason=request.reason,
        cancel=True,
    )


async def _refund(
    database: Database,
    program: Program,
    key: str,
    print_: bytes,
    order_id: str,
    *,
    amount: int | None,
    currency: str | None,
    reason: str | None,
    cancel: bool,
) -> Answer:
    now = datetime.now(UTC)
    args: tuple[Any, ...] = (
        program.id,
        key,
        print_,
        order_id,
        amount,
        currency,
        reason,
        cancel,
        program.return_policy,
        local_date(now, program.timezone),
        planning.lapses(program, now),
    )
    parties: list[int] = []
    if program.referral_policy is not None:
        async with database.single() as db:
            parties = await referral_records.rewarded_parties(
                db, program_id=program.id, order_id=order_id
            )
    if not parties:
        async with database.single() as db:
            row = await db.fetchrow(_REFUND, *args)
        assert row is not None
        return Answer(status=row["o_status"], body=row["o_body"], replayed=row["o_replayed"])
    # the refund of a referee's qualifying order: referrer and referee locked first, then the
    # refund and the clawback of the bonus in one transaction
    async with database.lock_members(program.id, parties) as locks:
        row = await locks.fetchrow(_REFUND, *args)
        assert row is not None
        answer = Answer(status=row["o_status"], body=row["o_body"], replayed=row["o_replayed"])
        if answer.replayed or answer.refused:
            return answer
        clawback = await referrals.clawback_after_refund(locks, program=program, order_id=order_id)
        if clawback is None:
            return answer
        body = await referral_records.refresh_kept_balance(
            locks, program_id=program.id, key=key, member_id=clawback.referee_id
        )
        return Answer(status=answer.status, body=body)


async def get(db: Session, *, program: Program, order_id: str) -> Order:
    row = await db.fetchrow(
        "SELECT o.*, m.external_id FROM orders o"
        " JOIN members m ON m.program_id = o.program_id AND m.id = o.member_id"
        " WHERE o.program_id = $1 AND o.order_id = $2",
        program.id,
        order_id,
    )
    if row is None:
        raise errors.OrderNotFound(f"no order {order_id!r} in this program")
    return Order(
        order_id=row["order_id"],
        member=row["external_id"],
        currency=row["currency"],
        created_at=row["created_at"],
        state=OrderState(
            amount=row["amount"],
            refunded_amount=row["refunded_amount"],
            earned_points=row["earned_points"],
            points_taken_back=row["points_taken_back"],
            points_written_off=row["points_written_off"],
            redeemed_points=row["redeemed_points"],
            redeemed_returned=row["redeemed_returned"],
            cancelled=row["cancelled_at"] is not None,
        ),
    )
