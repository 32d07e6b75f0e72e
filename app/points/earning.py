"""How an earn request becomes points: the program's rules applied to the order and the member.

The rules themselves are pure (`app.rules.engine.evaluate_earn`); this module builds their
inputs from the request and the database, and records what a once-only rule gave, so that it
does not give it again. Everything member-dependent runs inside the earn's database
transaction, under the member's advisory lock (see `app.points.service.earn`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

import orjson
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from app import errors
from app.points.schemas import EarnRequest
from app.programs.models import Program
from app.rules import engine
from app.rules.dates import local_date, start_of_day
from app.rules.engine import EarnOverflow, EarnResult, MemberContext
from app.rules.tiers import TierStatus

_WHOLE_ORDER_SKU = "order"


def rules_order(
    program: Program,
    *,
    occurred_at: datetime,
    amount: int,
    items: Sequence[engine.OrderItem] | None,
    channel: engine.Channel | None,
    store_id: str | None,
    terminal_id: str | None = None,
) -> engine.Order:
    """The order as the rules see it. Without `items`, the whole amount is one line. Without a
    channel, a sale with a store or terminal is `pos`, anything else `web`."""
    lines = items or [engine.OrderItem(sku=_WHOLE_ORDER_SKU, quantity=1, unit_price=amount)]
    return engine.Order(
        occurred_at=occurred_at,
        channel=channel or ("pos" if store_id or terminal_id else "web"),
        store_id=store_id,
        currency_exponent=program.currency_exponent,
        items=tuple(lines),
    )


def order_of(program: Program, request: EarnRequest, occurred_at: datetime) -> engine.Order:
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


def evaluate(program: Program, order: engine.Order, member: MemberContext) -> EarnResult:
    try:
        return engine.evaluate_earn(program.rules, order, member)
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


def tier_multiplier(program: Program, status: TierStatus | None) -> Decimal:
    if program.tier_program is None or status is None:
        return Decimal(1)
    for tier in program.tier_program.tiers:
        if tier.code == status.tier:
            return tier.earn_multiplier
    return Decimal(1)


@dataclass(frozen=True)
class _Periods:
    day: date
    year: str
    month: str


def _periods(program: Program, order: engine.Order) -> _Periods:
    day = local_date(order.occurred_at, program.rules.timezone)
    return _Periods(day=day, year=f"{day.year:04d}", month=f"{day.year:04d}-{day.month:02d}")


def _rule_ids(program: Program, kind: str) -> list[str]:
    return [rule.id for rule in program.rules.rules if rule.kind == kind]


# Everything the rules need about the member, in one round trip: the birthday, the awards of
# the order's local year and month, whether an earlier purchase earned, and (for daily caps)
# the points earned on the order's local day.
_CONTEXT = text(
    """
    SELECT m.birthday,
           NOT EXISTS (SELECT 1 FROM transactions t WHERE t.member_id = m.id
                          AND t.kind = 'earn' AND t.order_id IS NOT NULL) AS first_purchase,
           coalesce((SELECT jsonb_agg(jsonb_build_object(
                                'rule_id', a.rule_id, 'period', a.period,
                                'purchases', a.purchases, 'awarded_on', a.awarded_on))
                       FROM rule_awards a
                      WHERE a.member_id = m.id AND a.rule_id = ANY(:rule_ids)
                        AND a.period = ANY(:periods)), '[]'::jsonb) AS awards,
           CASE WHEN :daily THEN
               (SELECT coalesce(sum(e.amount), 0) FROM transactions t
                  JOIN entries e ON e.transaction_id = t.id AND e.member_id = t.member_id
                                AND e.asset = 'points'
                 WHERE t.member_id = m.id AND t.kind = 'earn'
                   AND t.occurred_at >= :start AND t.occurred_at < :end)
           ELSE 0 END AS earned_today
      FROM members m WHERE m.id = :member_id
    """
)


async def member_context(
    conn: AsyncConnection,
    program: Program,
    member_id: int | None,
    order: engine.Order,
    tier: TierStatus | None,
) -> MemberContext:
    """What the rules need to know about the member (`None`: not enrolled yet)."""
    multiplier = tier_multiplier(program, tier)
    if member_id is None:
        return MemberContext(tier_multiplier=multiplier, is_first_purchase=True)
    periods = _periods(program, order)
    birthday_rules = _rule_ids(program, "birthday_bonus")
    challenge_rules = _rule_ids(program, "frequency_challenge")
    timezone = program.rules.timezone
    row = (
        await conn.execute(
            _CONTEXT,
            {
                "member_id": member_id,
                "rule_ids": birthday_rules + challenge_rules,
                "periods": [periods.year, periods.month],
                "daily": bool(_rule_ids(program, "daily_cap")),
                "start": start_of_day(periods.day, timezone),
                "end": start_of_day(periods.day + timedelta(days=1), timezone),
            },
        )
    ).one()
    awards = row.awards if isinstance(row.awards, list) else orjson.loads(row.awards)
    last_birthday = max(
        (
            date.fromisoformat(a["awarded_on"])
            for a in awards
            if a["rule_id"] in birthday_rules and a["awarded_on"]
        ),
        default=None,
    )
    challenges = {
        a["rule_id"]: engine.ChallengeState(
            purchases=a["purchases"], awarded=a["awarded_on"] is not None
        )
        for a in awards
        if a["rule_id"] in challenge_rules and a["period"] == periods.month
    }
    return MemberContext(
        tier_multiplier=multiplier,
        is_first_purchase=row.first_purchase,
        birthday=row.birthday,
        last_birthday_bonus_on=last_birthday,
        challenges=challenges,
        points_earned_today=int(row.earned_today),
    )


# A once-only award is a plain INSERT: the primary key (member, rule, period) refuses a second
# one, whatever happened to the lock. Challenge purchases count up on the month's row.
_AWARD_ONCE = text(
    "INSERT INTO rule_awards (program_id, member_id, rule_id, period, awarded_on, transaction_id)"
    " VALUES (:program_id, :member_id, :rule_id, :period, :day, :txn)"
)
_COUNT_PURCHASE = text(
    """
    INSERT INTO rule_awards AS r (program_id, member_id, rule_id, period, purchases, awarded_on,
                                  transaction_id)
    VALUES (:program_id, :member_id, :rule_id, :period, 1,
            CASE WHEN :awarded THEN CAST(:day AS date) END,
            CASE WHEN :awarded THEN CAST(:txn AS bigint) END)
    ON CONFLICT (member_id, rule_id, period) DO UPDATE
       SET purchases = r.purchases + 1,
           awarded_on = coalesce(r.awarded_on, excluded.awarded_on),
           transaction_id = coalesce(r.transaction_id, excluded.transaction_id)
    """
)


async def record_awards(
    conn: AsyncConnection,
    program: Program,
    member_id: int,
    order: engine.Order,
    result: EarnResult,
    transaction_id: int,
) -> None:
    """Remember the once-only bonuses and challenge purchases of a posted earn."""
    periods = _periods(program, order)
    kinds = {rule.id: rule.kind for rule in program.rules.rules}
    base = {
        "program_id": program.id,
        "member_id": member_id,
        "day": periods.day,
        "txn": transaction_id,
    }
    for rule_id in result.challenge_purchases:
        await conn.execute(
            _COUNT_PURCHASE,
            {
                **base,
                "rule_id": rule_id,
                "period": periods.month,
                "awarded": rule_id in result.awarded_once,
            },
        )
    for rule_id in result.awarded_once:
        kind = kinds.get(rule_id)
        if kind == "first_purchase_bonus":
            await conn.execute(_AWARD_ONCE, {**base, "rule_id": rule_id, "period": "once"})
        elif kind == "birthday_bonus":
            await conn.execute(_AWARD_ONCE, {**base, "rule_id": rule_id, "period": periods.year})
