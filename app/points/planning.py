"""How a request becomes a posting event: the program's policy, applied in Python.

Everything the ledger is told here was decided by a pure rule of app.domain: how many points
an order earns (earning), until when they are pending (pending), when their lot lapses and when
an inactive member's points do (expiry), which business times are accepted (backdating), what
the tier metric credits. The engine (app.ledger.engine) only enforces the invariants and posts.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from app import errors
from app.domain import earning
from app.domain.backdating import occurred_at_problem
from app.domain.dates import local_date
from app.domain.earning import EarnOverflow, EarnResult, MemberContext
from app.domain.expiry import InactivityPolicy, inactivity_expires_at, lot_expires_at
from app.domain.pending import return_window_end
from app.domain.tiers import TierStatus
from app.ledger.engine import EngineCall, PostingEvent
from app.ledger.idempotency import fingerprint
from app.points.schemas import AdjustmentRequest, EarnRequest, RedeemRequest
from app.programs.models import Program

_WHOLE_ORDER_SKU = "order"


def engine_call(program: Program) -> EngineCall:
    """The engine's call for this program, under the settings version it was read at."""
    return EngineCall(
        program_id=program.id, program_version=program.version, versioned=program.rules_need_member
    )


def request_print(kind: str, request: EarnRequest | RedeemRequest | AdjustmentRequest) -> bytes:
    """What "the same request" means for an idempotency key (or a batch event's id)."""
    return fingerprint(kind, request.model_dump(mode="json"))


def check_occurred_at(program: Program, occurred_at: datetime | None, now: datetime) -> datetime:
    if occurred_at is None:
        return now
    problem = occurred_at_problem(occurred_at, now, program.max_backdate_days)
    if problem:
        raise errors.OccurredAtOutOfRange(problem)
    return occurred_at


def lapses(program: Program, earned_at: datetime) -> datetime | None:
    """When a lot of points earned (or credited) at `earned_at` lapses."""
    return lot_expires_at(program.expiry_policy, earned_at, program.timezone)


def inactive_at(program: Program, activity_at: datetime) -> datetime | None:
    """Under the inactivity policy, when all points lapse after activity at `activity_at`."""
    policy = program.expiry_policy
    if not isinstance(policy, InactivityPolicy):
        return None
    return inactivity_expires_at(policy, activity_at, program.timezone)


def day_of(program: Program, occurred_at: datetime) -> date:
    """The program-local day a posting counts on in `member_days` (what earns gave, for daily
    caps; the qualifying credit, for tiers). Kept for every program, so that a cap or a tier
    program added later reads a complete history."""
    return local_date(occurred_at, program.timezone)


def rules_order(
    program: Program,
    *,
    occurred_at: datetime,
    amount: int,
    items: Sequence[earning.OrderItem] | None,
    channel: earning.Channel | None,
    store_id: str | None,
    terminal_id: str | None = None,
) -> earning.Order:
    """The order as the rules see it. Without `items`, the whole amount is one line. Without a
    channel, a sale with a store or terminal is `pos`, anything else `web`."""
    lines = items or [earning.OrderItem(sku=_WHOLE_ORDER_SKU, quantity=1, unit_price=amount)]
    return earning.Order(
        occurred_at=occurred_at,
        channel=channel or ("pos" if store_id or terminal_id else "web"),
        store_id=store_id,
        currency_exponent=program.currency_exponent,
        items=tuple(lines),
    )


def order_of(program: Program, request: EarnRequest, occurred_at: datetime) -> earning.Order:
    """The rules' view of an earn request's order."""
    order = request.order
    assert order is not None
    return rules_order(
        program,
        occurred_at=occurred_at,
        amount=order.amount,
        items=order.items,
        channel=request.channel,
        store_id=request.store_id,
        terminal_id=request.terminal_id,
    )


def evaluate(program: Program, order: earning.Order, member: MemberContext) -> EarnResult:
    try:
        return earning.evaluate_earn(program.rules, order, member)
    except EarnOverflow as exc:
        raise errors.AmountOutOfRange(str(exc)) from exc


def rules_metadata(result: EarnResult, client: dict[str, Any] | None) -> dict[str, Any]:
    """Transaction metadata of a rules-computed earn: the client's pairs, the rule-set version
    and the breakdown (so a later rule change never rewrites why these points were given)."""
    return {
        **(client or {}),
        "rules_version": result.ruleset_version,
        "breakdown": [line.model_dump(mode="json") for line in result.breakdown],
    }


def tier_multiplier(program: Program, status: TierStatus | None) -> Decimal:
    """The earn multiplier of the member's tier (1 without tiers)."""
    if program.tier_program is None or status is None:
        return Decimal(1)
    for tier in program.tier_program.tiers:
        if tier.code == status.tier:
            return tier.earn_multiplier
    return Decimal(1)


def qualifying_credit(program: Program, points: int, earning_base: int, has_order: bool) -> int:
    """What an earn adds to the `qualifying` asset, in the unit of the program's tier metric:
    the points earned (`qualifying_points`), the order's earning base in minor units (`spend`),
    or 1 per order (`orders`). Nothing when the program has no tiers."""
    tiers = program.tier_program
    if tiers is None:
        return 0
    if tiers.metric == "qualifying_points":
        return points
    if not has_order:
        return 0
    return earning_base if tiers.metric == "spend" else 1


def earn_event(
    program: Program,
    *,
    key: str,
    request_fingerprint: bytes,
    request: EarnRequest,
    now: datetime,
    member: MemberContext | None = None,
    order_view: earning.Order | None = None,
) -> tuple[PostingEvent, EarnResult | None]:
    """The posting of an earn: explicit `points` as given, otherwise what the program's rules
    give the order (for a member in the state `member`; without it, a member the rules know
    nothing about). Points go to pending inside the return window; the lot they make lapses by
    the expiry policy; the tier metric gets its qualifying credit. Returns the rules' result
    too (None for explicit points)."""
    occurred_at = check_occurred_at(program, request.occurred_at, now)
    order = request.order
    if order is not None and order.currency != program.currency:
        raise errors.CurrencyMismatch(
            f"order is in {order.currency}, the program counts in {program.currency}"
        )
    result: EarnResult | None = None
    answer: dict[str, Any] | None = None
    if request.points is not None:
        points = request.points
        earning_base = order.amount if order else 0
        metadata = request.metadata
    else:
        view = order_view or order_of(program, request, occurred_at)
        result = evaluate(program, view, member or MemberContext())
        points = result.total
        if points <= 0:
            raise errors.NothingToEarn(
                f"under rules version {result.ruleset_version} this order earns no points"
            )
        earning_base = result.earning_base
        metadata = rules_metadata(result, request.metadata)
        answer = {"rules_version": metadata["rules_version"], "breakdown": metadata["breakdown"]}
    qualifying = qualifying_credit(program, points, earning_base, order is not None)
    if qualifying > 0:
        answer = {**(answer or {}), "qualifying": qualifying}
    event = PostingEvent(
        key=key,
        fingerprint=request_fingerprint,
        kind="earn",
        member=request.member,
        enroll=True,
        points=points,
        occurred_at=occurred_at,
        order_id=order.id if order else None,
        order_amount=order.amount if order else None,
        order_currency=order.currency if order else None,
        pending_until=return_window_end(occurred_at, program.pending_days) if order else None,
        lot_expires_at=lapses(program, occurred_at),
        inactive_at=inactive_at(program, occurred_at),
        qualifying=qualifying,
        day=day_of(program, occurred_at),
        metadata=metadata,
        store_id=request.store_id,
        terminal_id=request.terminal_id,
        answer=answer,
    )
    return event, result


def redeem_event(
    program: Program, *, key: str, request_fingerprint: bytes, request: RedeemRequest, now: datetime
) -> PostingEvent:
    """A redemption: member available -> redemption (FIFO by expiry over the member's lots)."""
    occurred_at = check_occurred_at(program, request.occurred_at, now)
    return PostingEvent(
        key=key,
        fingerprint=request_fingerprint,
        kind="redeem",
        member=request.member,
        enroll=False,
        points=-request.points,
        occurred_at=occurred_at,
        order_id=request.order_id,
        inactive_at=inactive_at(program, occurred_at),
        metadata=request.metadata,
        store_id=request.store_id,
        terminal_id=request.terminal_id,
    )


def adjust_event(
    program: Program,
    *,
    key: str,
    request_fingerprint: bytes,
    request: AdjustmentRequest,
    now: datetime,
) -> PostingEvent:
    """A correction: issuance <-> member available, signed."""
    return PostingEvent(
        key=key,
        fingerprint=request_fingerprint,
        kind="adjust",
        member=request.member,
        enroll=False,
        points=request.points,
        occurred_at=now,
        lot_expires_at=lapses(program, now),
        reason=request.reason,
    )
