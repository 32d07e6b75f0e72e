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

import orjson
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from app import errors
from app.ledger import idempotency, posting
from app.ledger.fingerprint import fingerprint
from app.ledger.idempotency import StoredResponse
from app.points import earning
from app.points.schemas import AdjustmentRequest, EarnRequest, RedeemRequest
from app.programs.models import Program
from app.referrals.service import after_earn, with_current_balance
from app.rules import engine
from app.rules.backdating import occurred_at_problem
from app.rules.dates import local_date
from app.rules.engine import EarnResult, MemberContext
from app.rules.pending import return_window_end
from app.tiers.service import refresh_tier, stored_tier

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
    "qualifying",
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
    # credit to the `qualifying` asset (earns in programs with tiers)
    qualifying: int = 0


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
        "qualifying": move.qualifying,
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


@dataclass(frozen=True)
class Earning:
    """An earn, computed: the ledger move, and the rules' result when the rules computed it."""

    move: Move
    result: EarnResult | None = None
    order: engine.Order | None = None


def plan_earn(
    program: Program,
    request: EarnRequest,
    now: datetime,
    member: MemberContext | None = None,
    rules_view: engine.Order | None = None,
) -> Earning:
    """The move of an earn: explicit `points` as given, otherwise what the program's rules give
    the order (for a member in the state `member`; without it, a member the rules know nothing
    about). Points go to pending inside the return window. `rules_view`: the order as the
    rules see it, when the caller has built it already."""
    occurred_at = _check_occurred_at(program, request.occurred_at, now)
    order = request.order
    if order is not None and order.currency != program.currency:
        raise errors.CurrencyMismatch(
            f"order is in {order.currency}, the program counts in {program.currency}"
        )
    result: EarnResult | None = None
    if request.points is not None:
        rules_view = None
        points = request.points
        earning_base = order.amount if order else 0
        metadata = request.metadata
    else:
        rules_view = rules_view or earning.order_of(program, request, occurred_at)
        result = earning.evaluate(program, rules_view, member or MemberContext())
        points = result.total
        if points <= 0:
            raise errors.NothingToEarn(
                f"under rules version {result.ruleset_version} this order earns no points"
            )
        earning_base = result.earning_base
        metadata = earning.rules_metadata(result, request.metadata)
    move = Move(
        kind="earn",
        member=request.member,
        member_delta=points,
        points=points,
        counter_account="issuance",
        enroll=True,
        occurred_at=occurred_at,
        order_id=order.id if order else None,
        metadata=metadata,
        order_amount=order.amount if order else None,
        order_currency=order.currency if order else None,
        pending_until=pending_until(program, occurred_at) if order else None,
        store_id=request.store_id,
        terminal_id=request.terminal_id,
        qualifying=earning.qualifying_credit(program, points, earning_base, order is not None),
    )
    return Earning(move=move, result=result, order=rules_view)


def earn_move(program: Program, request: EarnRequest, now: datetime) -> Move:
    """The move of an earn whose rules need nothing from the member (see `plan_earn`)."""
    return plan_earn(program, request, now).move


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
    """Award points. When the rules need nothing from the member this is one statement;
    otherwise see `_earn_for_member`."""
    now = datetime.now(UTC)
    fingerprint_ = request_print("earn", request)
    if request.points is not None or not program.rules_need_member:
        return await _post(conn, program, key, fingerprint_, earn_move(program, request, now))
    return await _earn_for_member(conn, program, key, fingerprint_, request, now)


_BEGIN = text("SELECT o_member_id, o_key_used FROM earn_member_begin(:program_id, :member, :key)")


async def _earn_for_member(
    conn: AsyncConnection,
    program: Program,
    key: str,
    fingerprint_: bytes,
    request: EarnRequest,
    now: datetime,
) -> StoredResponse:
    """An earn whose rules depend on the member (tier multiplier, once-only bonuses, challenges,
    daily caps, referrals): one database transaction holding the member's advisory lock, so
    that what the rules read (the tier, what was awarded, what was earned today) cannot change
    before the posting and the records of what it awarded are written. Once-only awards are
    also refused twice by the primary key of `rule_awards`."""
    driver = await posting.driver(conn)
    async with driver.transaction():
        begun = (
            await conn.execute(
                _BEGIN, {"program_id": program.id, "member": request.member, "key": key}
            )
        ).one()
        member_id = begun.o_member_id
        if begun.o_key_used:
            # a replay (or 409 for another request): answered from the stored response, never
            # recomputed (the rules may have changed, or have given only a bonus)
            replay = await idempotency.claim(conn, program.id, key, fingerprint_)
            assert replay is not None  # the key is taken: claiming it replays or refuses
            return replay
        today = local_date(now, program.timezone)
        # one read of the stored tier serves both evaluations: the first stores nothing
        tier_state = await stored_tier(conn, program, member_id)
        tier = await refresh_tier(conn, program, member_id, today, stored=tier_state, save=False)
        occurred_at = _check_occurred_at(program, request.occurred_at, now)
        view = earning.order_of(program, request, occurred_at)
        context = await earning.member_context(conn, program, member_id, view, tier)
        plan = plan_earn(program, request, now, context, view)
        stored = await _post(conn, program, key, fingerprint_, plan.move)
        if stored.replayed or plan.result is None or plan.order is None:
            return stored
        transaction_id = int(orjson.loads(stored.body)["transaction_id"])
        await earning.record_awards(
            conn, program, member_id, plan.order, plan.result, transaction_id
        )
        await refresh_tier(conn, program, member_id, today, stored=tier_state)
        if request.order is not None:
            rewarded = await after_earn(
                conn, program, member_id, request.order.id, plan.result.earning_base, occurred_at
            )
            if rewarded is not None:  # the referee's balance now includes the referral bonus
                stored = await with_current_balance(
                    conn, program=program, key=key, stored=stored, member_id=member_id
                )
        return stored


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
