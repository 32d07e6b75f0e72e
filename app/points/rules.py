"""Earns whose rules depend on the member: read, evaluate in Python, post with compare-and-set.

A program with tiers, once-only bonuses (first purchase, birthday), frequency challenges, daily
caps or referrals earns on what it knows of the member. No lock is held while the rules run:

  1. one statement reads the contexts of all the members of a batch (`read_contexts`): their
     version, birthday, whether they ever earned on an order, the awards of the periods
     concerned, what they earned on the days concerned, their stored tier status, membership
     terms and qualifying credit per day (the `member_days` projection: one row per active
     day, whatever the number of earns), and whether a referral of theirs waits for a bonus;
  2. the pure rules evaluate each event in order (`Evaluator`), updating the member's context
     in memory as if the previous events had posted (the points earned today, the awards, the
     qualifying credit, the tier), so several events of one member in a batch see each other;
  3. each event carries the member's version it was computed from (`expected_version`); the
     engine posts it only if the member is still at that version (every posting of such a
     program bumps it). A stale event is evaluated again from a fresh read, never posted on
     stale state. "Once" is also guarded by the primary key of `rule_awards`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime
from typing import Any

from app.db import Session
from app.domain.dates import local_date
from app.domain.earning import ChallengeState, EarnResult, MemberContext, Order
from app.domain.tiers import TierStatus
from app.ledger.engine import PostingEvent
from app.points import planning
from app.points.schemas import EarnRequest
from app.programs.models import Program
from app.tiers import projection
from app.tiers.projection import EventDay, StoredTier
from app.tiers.repository import days_from, stored_from

_CONTEXTS = """
    SELECT u.external_id, m.id, coalesce(m.version, 0) AS version, m.birthday, m.created_at,
           EXISTS (SELECT 1 FROM orders o
                    WHERE o.program_id = $1 AND o.member_id = m.id AND o.amount IS NOT NULL)
               AS earned_on_order,
           (SELECT coalesce(jsonb_agg(jsonb_build_array(a.rule_id, a.period, a.purchases,
                                                        a.awarded_on)), '[]')
              FROM rule_awards a
             WHERE a.program_id = $1 AND a.member_id = m.id AND a.rule_id = ANY ($3::text[])
               AND a.period = ANY ($4::text[])) AS awards,
           (SELECT coalesce(jsonb_agg(jsonb_build_array(d.day, d.earned)), '[]')
              FROM member_days d
             WHERE d.program_id = $1 AND d.member_id = m.id AND d.day = ANY ($5::date[]))
               AS earned,
           t.status, t.evaluated_on, t.updated_at - $6::interval AS watermark,
           CASE WHEN $7 THEN
               (SELECT coalesce(json_agg(json_build_array(s.tier, s.starts_on, s.ends_on)
                                         ORDER BY s.id), '[]')
                  FROM memberships s WHERE s.program_id = $1 AND s.member_id = m.id)
           ELSE '[]' END AS terms,
           CASE WHEN $7 THEN
               (SELECT coalesce(json_agg(json_build_array(
                           d.day, d.qualifying,
                           d.qualifying_changed_at >= t.updated_at - $6::interval,
                           d.qualifying_taken_back_at >= t.updated_at - $6::interval)
                         ORDER BY d.day), '[]')
                  FROM member_days d
                 WHERE d.program_id = $1 AND d.member_id = m.id
                   AND d.qualifying_changed_at IS NOT NULL)
           ELSE '[]' END AS days,
           $8 AND EXISTS (SELECT 1 FROM referrals r
                           WHERE r.program_id = $1 AND r.referee_id = m.id
                             AND r.status IN ('pending', 'cap_reached')) AS open_referral
      FROM unnest($2::text[]) AS u (external_id)
      LEFT JOIN members m ON m.program_id = $1 AND m.external_id = u.external_id
      LEFT JOIN member_tiers t ON t.program_id = m.program_id AND t.member_id = m.id
"""


@dataclass
class MemberRules:
    """What the rules know about one member, as read (and as the evaluator moves it on)."""

    member_id: int | None
    version: int
    birthday: date | None
    earned_on_order: bool
    # (rule id, period) -> (purchases, awarded_on)
    awards: dict[tuple[str, str], tuple[int, date | None]]
    # local day -> points the day's orders earned (what daily caps count)
    earned: dict[date, int]
    tier: StoredTier
    days: list[EventDay]
    open_referral: bool
    # when the evaluator posts this member's tier status (set once it has evaluated one)
    tier_status: TierStatus | None = field(default=None)


def _periods(program: Program, occurred_at: datetime) -> tuple[date, str, str]:
    day = local_date(occurred_at, program.rules.timezone)
    return day, f"{day.year:04d}", f"{day.year:04d}-{day.month:02d}"


def _rule_ids(program: Program, *kinds: str) -> list[str]:
    return [rule.id for rule in program.rules.rules if rule.kind in kinds]


async def read_contexts(
    db: Session, program: Program, members: list[str], instants: list[datetime], now: datetime
) -> dict[str, MemberRules]:
    """The rules' contexts of `members` (one statement): for the local days, months and years of
    `instants` (the events' business times). A member not enrolled yet gets an empty context at
    version 0 (the version of a member enrolled by an earn)."""
    periods = {period for instant in instants for period in _periods(program, instant)[1:]}
    days = {_periods(program, instant)[0] for instant in instants}
    rows = await db.fetch(
        _CONTEXTS,
        program.id,
        sorted(set(members)),
        _rule_ids(program, "birthday_bonus", "frequency_challenge", "first_purchase_bonus"),
        sorted(periods | {"once"}),
        sorted(days),
        projection.LATE_MARGIN,
        program.tier_program is not None,
        program.referral_policy is not None,
    )
    contexts: dict[str, MemberRules] = {}
    for row in rows:
        known = row["id"] is not None
        contexts[row["external_id"]] = MemberRules(
            member_id=row["id"],
            version=row["version"],
            birthday=row["birthday"],
            earned_on_order=row["earned_on_order"],
            awards={
                (rule_id, period): (
                    purchases,
                    None if awarded_on is None else date.fromisoformat(awarded_on),
                )
                for rule_id, period, purchases, awarded_on in row["awards"]
            },
            earned={date.fromisoformat(day): int(points) for day, points in row["earned"]},
            tier=stored_from(row)
            if known
            else StoredTier(
                created_at=now, status=None, evaluated_on=None, watermark=None, terms=()
            ),
            days=days_from(row["days"]),
            open_referral=bool(row["open_referral"]),
        )
    return contexts


@dataclass
class Planned:
    """A member-dependent earn, computed: its event (with the expected version, the awards to
    record and the tier to store) and the rules' result."""

    event: PostingEvent
    result: EarnResult | None
    member: MemberRules


class Evaluator:
    """Evaluates a batch's member-dependent earns in order, from contexts read once."""

    def __init__(self, program: Program, contexts: dict[str, MemberRules], now: datetime) -> None:
        self.program = program
        self.contexts = contexts
        self.now = now
        self.today = local_date(now, program.timezone)

    def _tier_before(self, member: MemberRules) -> TierStatus | None:
        tiers = self.program.tier_program
        if tiers is None:
            return None
        return projection.evaluate(
            tiers, self.program.timezone, member.tier, member.days, self.today
        ).status

    def member_context(self, member: MemberRules, order: Order) -> MemberContext:
        day, _, month = _periods(self.program, order.occurred_at)
        birthday_rules = set(_rule_ids(self.program, "birthday_bonus"))
        challenge_rules = set(_rule_ids(self.program, "frequency_challenge"))
        tier = self._tier_before(member)
        multiplier = planning.tier_multiplier(self.program, tier)
        last_birthday = max(
            (
                awarded_on
                for (rule_id, _), (_, awarded_on) in member.awards.items()
                if rule_id in birthday_rules and awarded_on is not None
            ),
            default=None,
        )
        challenges = {
            rule_id: ChallengeState(purchases=purchases, awarded=awarded_on is not None)
            for (rule_id, period), (purchases, awarded_on) in member.awards.items()
            if rule_id in challenge_rules and period == month
        }
        return MemberContext(
            tier_multiplier=multiplier,
            is_first_purchase=not member.earned_on_order,
            birthday=member.birthday,
            last_birthday_bonus_on=last_birthday,
            challenges=challenges,
            points_earned_today=member.earned.get(day, 0),
        )

    def plan(self, *, key: str, request_fingerprint: bytes, request: EarnRequest) -> Planned:
        """The event of one earn, and the member's context moved on as if it posted."""
        member = self.contexts[request.member]
        occurred_at = planning.check_occurred_at(self.program, request.occurred_at, self.now)
        view = planning.order_of(self.program, request, occurred_at)
        event, result = planning.earn_event(
            self.program,
            key=key,
            request_fingerprint=request_fingerprint,
            request=request,
            now=self.now,
            member=self.member_context(member, view),
            order_view=view,
        )
        assert result is not None  # member-dependent earns are priced by the rules
        awards = self._awards(result, view)
        tier = self._tier_after(member, event)
        event = replace(
            event,
            expected_version=member.version,
            awards=awards or None,
            tier=tier,
            day=local_date(occurred_at, self.program.timezone),
        )
        self._moved_on(member, event, awards)
        return Planned(event, result, member)

    def _awards(self, result: EarnResult, order: Order) -> list[dict[str, Any]]:
        """The once-only awards and challenge purchases of this earn, as rule_awards rows."""
        day, year, month = _periods(self.program, order.occurred_at)
        kinds = {rule.id: rule.kind for rule in self.program.rules.rules}
        awards: list[dict[str, Any]] = []
        for rule_id in result.challenge_purchases:
            awards.append(
                {
                    "rule_id": rule_id,
                    "period": month,
                    "purchases": 1,
                    "awarded_on": day.isoformat() if rule_id in result.awarded_once else None,
                }
            )
        for rule_id in result.awarded_once:
            period = {"first_purchase_bonus": "once", "birthday_bonus": year}.get(
                kinds.get(rule_id, "")
            )
            if period is not None:
                awards.append(
                    {
                        "rule_id": rule_id,
                        "period": period,
                        "purchases": 0,
                        "awarded_on": day.isoformat(),
                    }
                )
        return awards

    def _tier_after(self, member: MemberRules, event: PostingEvent) -> dict[str, Any] | None:
        """The tier status with this earn's qualifying credit, to store with the posting."""
        tiers = self.program.tier_program
        if tiers is None:
            return None
        days = member.days
        if event.qualifying:
            credit_day = local_date(event.occurred_at, self.program.timezone)
            days = projection.with_credit(days, credit_day, event.qualifying)
        result = projection.evaluate(tiers, self.program.timezone, member.tier, days, self.today)
        member.days = days
        member.tier_status = result.status
        return projection.status_json(result.status, self.today)

    def _moved_on(
        self, member: MemberRules, event: PostingEvent, awards: list[dict[str, Any]]
    ) -> None:
        """The member's context as if `event` had posted (for its next event in the batch)."""
        member.version += 1
        if event.order_id is not None:
            member.earned_on_order = True
        day = local_date(event.occurred_at, self.program.rules.timezone)
        member.earned[day] = member.earned.get(day, 0) + event.points
        for award in awards:
            slot = (award["rule_id"], award["period"])
            purchases, awarded_on = member.awards.get(slot, (0, None))
            given = award["awarded_on"]
            member.awards[slot] = (
                purchases + award["purchases"],
                awarded_on or (None if given is None else date.fromisoformat(given)),
            )
        if member.tier_status is not None:
            member.tier = projection.stored_after(
                member.tier, member.tier_status, self.today, datetime.now(UTC)
            )
