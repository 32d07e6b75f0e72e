"""Quotes: computed from the same rules and balances as the real thing, writing nothing."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from app import errors
from app.members.schemas import Balance
from app.points import earning
from app.programs.models import Program
from app.quotes.schemas import Quote, QuoteRequest
from app.rules.dates import local_date
from app.rules.engine import EarnResult, MemberContext
from app.rules.money import points_value
from app.schemas import Money
from app.tiers.service import refresh_tier

# The balance as lazy maintenance would leave it: due pending points and expired holds are
# counted as available, and lots past their expiry are gone, without writing anything.
_BALANCE_NOW = text(
    """
    SELECT coalesce(sum(a.balance) FILTER (WHERE a.kind IN ('available', 'debt')), 0) AS available,
           coalesce(sum(a.balance) FILTER (WHERE a.kind = 'pending'), 0) AS pending,
           coalesce(sum(a.balance) FILTER (WHERE a.kind = 'held'), 0) AS held,
           (SELECT coalesce(sum(remaining), 0) FROM pending_lots
             WHERE member_id = m.id AND remaining > 0 AND release_at <= now()) AS due,
           (SELECT coalesce(sum(points), 0) FROM holds
             WHERE member_id = m.id AND status = 'open' AND expires_at <= now()) AS expired,
           (SELECT coalesce(sum(remaining), 0) FROM lots
             WHERE member_id = m.id AND remaining > 0 AND expires_at <= now()) AS lapsed,
           m.id AS member_id
      FROM members m JOIN accounts a ON a.member_id = m.id AND a.asset = 'points'
     WHERE m.program_id = :program_id AND m.external_id = :external_id
     GROUP BY m.id
    """
)


def balance_of(program: Program, available: int, pending: int, held: int) -> Balance:
    def money(points: int) -> Money:
        return Money(amount=points_value(points, program.point_value), currency=program.currency)

    return Balance(
        available=available,
        pending=pending,
        held=held,
        available_value=money(available),
        pending_value=money(pending),
        held_value=money(held),
    )


async def quote(conn: AsyncConnection, *, program: Program, request: QuoteRequest) -> Quote:
    order = request.order
    if order.currency != program.currency:
        raise errors.CurrencyMismatch(
            f"order is in {order.currency}, the program counts in {program.currency}"
        )
    row = (
        await conn.execute(_BALANCE_NOW, {"program_id": program.id, "external_id": request.member})
    ).one_or_none()
    available, pending, held = 0, 0, 0
    if row is not None:
        available = row.available + row.due + row.expired - row.lapsed
        pending = row.pending - row.due
        held = row.held - row.expired
    result = await _earn(conn, program, request, None if row is None else row.member_id)
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
        redeemable_value=Money(
            amount=points_value(redeemable, program.point_value), currency=program.currency
        ),
        redeem_points=redeem,
        redeem_value=None
        if redeem is None
        else Money(amount=points_value(redeem, program.point_value), currency=program.currency),
        redeem_allowed=allowed,
        balance=balance_of(program, available, pending, held),
        balance_after=balance_of(program, after_available, after_pending, held),
    )


async def _earn(
    conn: AsyncConnection, program: Program, request: QuoteRequest, member_id: int | None
) -> EarnResult:
    """What the order would earn, by the same rules and member state as a real earn. The tier
    is evaluated to today without storing it: a quote writes nothing."""
    now = datetime.now(UTC)
    order = request.order
    view = earning.rules_order(
        program,
        occurred_at=request.occurred_at or now,
        amount=order.amount,
        items=order.items,
        channel=request.channel,
        store_id=request.store_id,
    )
    if member_id is None or not program.rules_need_member:
        context = MemberContext(is_first_purchase=member_id is None)
        return earning.evaluate(program, view, context)
    today = local_date(now, program.timezone)
    tier = await refresh_tier(conn, program, member_id, today, save=False)
    context = await earning.member_context(conn, program, member_id, view, tier)
    return earning.evaluate(program, view, context)
