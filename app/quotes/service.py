"""Quotes: computed from the same rules and balances as the real thing, writing nothing."""

from __future__ import annotations

from datetime import UTC, datetime

from app import errors
from app.db import Session
from app.domain.earning import EarnResult, MemberContext
from app.domain.money import points_value
from app.members.schemas import Balance
from app.points import planning, rules
from app.programs.models import Program
from app.quotes.schemas import Quote, QuoteRequest
from app.schemas import Money

# The balance as lazy maintenance would leave it: due pending points and expired holds are
# counted as available, and lots past their expiry are gone, without writing anything.
_BALANCE_NOW = """
    SELECT coalesce(sum(a.balance) FILTER (WHERE a.kind IN ('available', 'debt')), 0)
               AS available,
           coalesce(sum(a.balance) FILTER (WHERE a.kind = 'pending'), 0) AS pending,
           coalesce(sum(a.balance) FILTER (WHERE a.kind = 'held'), 0) AS held,
           (SELECT coalesce(sum(remaining), 0) FROM pending_lots
             WHERE program_id = m.program_id AND member_id = m.id AND remaining > 0
               AND release_at <= now()) AS due,
           (SELECT coalesce(sum(points), 0) FROM holds
             WHERE program_id = m.program_id AND member_id = m.id AND status = 'open'
               AND expires_at <= now()) AS expired,
           (SELECT coalesce(sum(remaining), 0) FROM lots
             WHERE program_id = m.program_id AND member_id = m.id AND remaining > 0
               AND expires_at <= now()) AS lapsed,
           m.id AS member_id
      FROM members m
      JOIN accounts a ON a.program_id = m.program_id AND a.member_id = m.id
                     AND a.asset = 'points'
     WHERE m.program_id = $1 AND m.external_id = $2
     GROUP BY m.program_id, m.id
"""


def _money(program: Program, points: int) -> Money:
    return Money(amount=points_value(points, program.point_value), currency=program.currency)


def balance_of(program: Program, available: int, pending: int, held: int) -> Balance:
    return Balance(
        available=available,
        pending=pending,
        held=held,
        available_value=_money(program, available),
        pending_value=_money(program, pending),
        held_value=_money(program, held),
    )


async def quote(db: Session, *, program: Program, request: QuoteRequest) -> Quote:
    order = request.order
    if order.currency != program.currency:
        raise errors.CurrencyMismatch(
            f"order is in {order.currency}, the program counts in {program.currency}"
        )
    row = await db.fetchrow(_BALANCE_NOW, program.id, request.member)
    available, pending, held = 0, 0, 0
    if row is not None:
        available = row["available"] + row["due"] + row["expired"] - row["lapsed"]
        pending = row["pending"] - row["due"]
        held = row["held"] - row["expired"]
    result = await _earn(db, program, request, known=row is not None)
    earn = result.total
    earn_pending = earn > 0 and program.pending_days > 0
    redeem = request.redeem_points
    allowed = None if redeem is None else redeem <= available
    spent = redeem if allowed else 0
    after_available = available - (spent or 0) + (0 if earn_pending else earn)
    after_pending = pending + (earn if earn_pending else 0)
    redeemable = max(available, 0)
    return Quote(
        member=request.member,
        known_member=row is not None,
        earn_points=earn,
        rules_version=result.ruleset_version,
        breakdown=list(result.breakdown),
        earn_pending=earn_pending,
        redeemable_points=redeemable,
        redeemable_value=_money(program, redeemable),
        redeem_points=redeem,
        redeem_value=None if redeem is None else _money(program, redeem),
        redeem_allowed=allowed,
        balance=balance_of(program, available, pending, held),
        balance_after=balance_of(program, after_available, after_pending, held),
    )


async def _earn(db: Session, program: Program, request: QuoteRequest, *, known: bool) -> EarnResult:
    """What the order would earn, by the same rules and member state as a real earn (the tier
    evaluated to today, nothing stored: a quote writes nothing)."""
    now = datetime.now(UTC)
    order = request.order
    occurred_at = request.occurred_at or now
    view = planning.rules_order(
        program,
        occurred_at=occurred_at,
        amount=order.amount,
        items=order.items,
        channel=request.channel,
        store_id=request.store_id,
    )
    if not known or not program.rules_need_member:
        return planning.evaluate(program, view, MemberContext(is_first_purchase=not known))
    contexts = await rules.read_contexts(db, program, [request.member], [occurred_at], now)
    evaluator = rules.Evaluator(program, contexts, now)
    return planning.evaluate(
        program, view, evaluator.member_context(contexts[request.member], view)
    )
