"""Earning, redeeming and adjusting points: each is one call of `api_move_points`.

That SQL function claims the idempotency key, finds (or enrols) the member, moves the points
between the member's `available` account and a program account, and stores the response, all
in one statement and one commit.

Accounting (per design section 2):
  earn        issuance   -> member available
  redeem      member available -> redemption
  adjust (+)  issuance   -> member available
  adjust (-)  member available -> issuance
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from app import errors
from app.ledger import posting
from app.ledger.fingerprint import fingerprint
from app.ledger.idempotency import StoredResponse
from app.points.schemas import AdjustmentRequest, EarnRequest, RedeemRequest
from app.programs.models import Program
from app.rules.backdating import occurred_at_problem
from app.rules.earn import base_rate_points
from app.rules.pending import return_window_end

_MOVE_POINTS = posting.api_call(
    "api_move_points",
    "program_id",
    "key",
    "fingerprint",
    "kind",
    "member",
    "enroll",
    "member_delta",
    "points",
    "counter_account_id",
    "occurred_at",
    "order_id",
    "reason",
    "metadata::jsonb",
    "order_amount",
    "order_currency",
    "pending_until",
    "store_id",
    "terminal_id",
)


@dataclass(frozen=True)
class Move:
    kind: str
    member: str
    member_delta: int
    points: int
    counter_account: str
    enroll: bool
    occurred_at: datetime
    order_id: str | None = None
    reason: str | None = None
    metadata: dict[str, Any] | None = None
    order_amount: int | None = None
    order_currency: str | None = None
    # points of an order inside the return window are pending until then
    pending_until: datetime | None = None
    store_id: str | None = None
    terminal_id: str | None = None


def move_params(program: Program, key: str, request_print: bytes, move: Move) -> dict[str, Any]:
    """The arguments of `api_move_points` for one move (also one event of a batch)."""
    return {
        "program_id": program.id,
        "key": key,
        "fingerprint": request_print,
        "kind": move.kind,
        "member": move.member,
        "enroll": move.enroll,
        "member_delta": move.member_delta,
        "points": move.points,
        "counter_account_id": program.accounts[move.counter_account],
        "occurred_at": move.occurred_at,
        "order_id": move.order_id,
        "reason": move.reason,
        "metadata": posting.as_jsonb(move.metadata),
        "order_amount": move.order_amount,
        "order_currency": move.order_currency,
        "pending_until": move.pending_until,
        "store_id": move.store_id,
        "terminal_id": move.terminal_id,
    }


async def _post(
    conn: AsyncConnection, program: Program, key: str, request_print: bytes, move: Move
) -> StoredResponse:
    return await posting.run(conn, _MOVE_POINTS, move_params(program, key, request_print, move))


def request_print(kind: str, request: EarnRequest | RedeemRequest | AdjustmentRequest) -> bytes:
    """What "the same request" means for an idempotency key (or a batch event id)."""
    return fingerprint(kind, request.model_dump(mode="json"))


def _check_occurred_at(program: Program, occurred_at: datetime | None, now: datetime) -> datetime:
    if occurred_at is None:
        return now
    problem = occurred_at_problem(occurred_at, now, program.max_backdate_days)
    if problem:
        raise errors.OccurredAtOutOfRange(problem)
    return occurred_at


def pending_until(program: Program, occurred_at: datetime) -> datetime | None:
    """When an order's points leave the return window (None: no window)."""
    return return_window_end(occurred_at, program.pending_days)


def earn_points(program: Program, request: EarnRequest) -> int:
    """Explicit points win; otherwise the order earns at the program's base rate."""
    if request.order is not None and request.order.currency != program.currency:
        raise errors.CurrencyMismatch(
            f"order is in {request.order.currency}, the program counts in {program.currency}"
        )
    if request.points is not None:
        return request.points
    assert request.order is not None  # the schema requires points or order
    points = base_rate_points(request.order.amount, program.currency_exponent, program.base_rate)
    if points <= 0:
        raise errors.NothingToEarn(
            f"an order of {request.order.amount} minor units earns no points at this base rate"
        )
    return points


def earn_move(program: Program, request: EarnRequest, now: datetime) -> Move:
    """The ledger move of an earn: issuance -> member (pending inside the return window)."""
    occurred_at = _check_occurred_at(program, request.occurred_at, now)
    points = earn_points(program, request)
    order = request.order
    return Move(
        kind="earn",
        member=request.member,
        member_delta=points,
        points=points,
        counter_account="issuance",
        enroll=True,
        occurred_at=occurred_at,
        order_id=order.id if order else None,
        metadata=request.metadata,
        order_amount=order.amount if order else None,
        order_currency=order.currency if order else None,
        pending_until=pending_until(program, occurred_at) if order else None,
        store_id=request.store_id,
        terminal_id=request.terminal_id,
    )


def redeem_move(program: Program, request: RedeemRequest, now: datetime) -> Move:
    """The ledger move of a redemption: member available -> redemption."""
    return Move(
        kind="redeem",
        member=request.member,
        member_delta=-request.points,
        points=request.points,
        counter_account="redemption",
        enroll=False,
        occurred_at=_check_occurred_at(program, request.occurred_at, now),
        order_id=request.order_id,
        metadata=request.metadata,
        store_id=request.store_id,
        terminal_id=request.terminal_id,
    )


async def earn(
    conn: AsyncConnection, *, program: Program, key: str, request: EarnRequest
) -> StoredResponse:
    move = earn_move(program, request, datetime.now(UTC))
    return await _post(conn, program, key, request_print("earn", request), move)


async def redeem(
    conn: AsyncConnection, *, program: Program, key: str, request: RedeemRequest
) -> StoredResponse:
    move = redeem_move(program, request, datetime.now(UTC))
    return await _post(conn, program, key, request_print("redeem", request), move)


async def adjust(
    conn: AsyncConnection, *, program: Program, key: str, request: AdjustmentRequest
) -> StoredResponse:
    move = Move(
        kind="adjust",
        member=request.member,
        member_delta=request.points,
        points=request.points,
        counter_account="issuance",
        enroll=False,
        occurred_at=datetime.now(UTC),
        reason=request.reason,
    )
    return await _post(conn, program, key, request_print("adjust", request), move)
