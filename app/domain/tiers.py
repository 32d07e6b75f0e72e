"""Tiers: which status a member holds, until when, and what it takes to move.

A program has ordered tiers (the first, threshold 0, is the base everyone holds) and one
qualifying *metric* -- ``qualifying_points``, ``spend`` (minor units) or ``orders`` -- summed over
a *window*: the calendar year to date, or the last N months (``rolling``). Events are signed:
a refund or a reversal is a negative event that takes its credit back.

The member's *earned* tier follows four rules:

1. **Upgrade at once.** On any day with a qualifying event, if the window ending that day
   reaches a higher threshold, the member moves up that day. The tier is then guaranteed until
   the end of the period: 31 December (calendar year) or N months after that day (rolling).
2. **Keep it while you meet it.** A later event at which the window still meets the tier's
   threshold extends the guarantee the same way (for a calendar year it already runs to
   31 December; for a rolling window it now runs N months from this event).
3. **Review at the end of the guarantee.** The day after `guaranteed_until` the window ending
   on `guaranteed_until` is reviewed. If it meets the tier, the tier is *renewed* for the next
   period (the next 31 December, or N more months). If not, the member keeps the tier through
   a *grace period* of `grace_days` and is *downgraded* the day after it, to the best tier
   either the reviewed window or the window ending that day qualifies for. A qualifying event
   during the grace that meets the tier again *requalifies* the member instead.
4. **Refunds count at the next review**, never before: a refund that brings the window below
   the tier does not take the tier away mid-period, but the review sees the reduced total.

A **paid membership** grants its tier from `starts_on` through `ends_on` regardless of
qualification. The member holds the higher of the earned tier and the best membership tier;
when the membership ends the member falls back to the earned tier, which kept evolving
underneath all along (`TierStatus.earned`).

Worked example (calendar year, Silver at 1,000 qualifying points, Gold at 2,500, 30 days of
grace): 1,800 points by May 2026 make a member Silver; 900 more on 10 June 2026 make 2,700:
Gold from 10 June, guaranteed until 31 December 2026. A 400-point refund on 1 July leaves
2,300 -- still Gold, but on 1 January 2027 the review of 2026 finds Silver level: Gold is kept
through the grace (until 30 January 2027), and from 31 January 2027 the member is Silver,
guaranteed until 31 December 2027 (Silver was earned in 2026, so it covers 2027).

`evaluate_tier` replays the member's state from the earned tier's `since` to `today`, so
running it daily or once a year gives the same answer for the same events.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from itertools import accumulate
from typing import Literal, Self

from pydantic import Field, model_validator

from app.domain.dates import ONE_DAY, add_months, year_end
from app.domain.types import Count, IsoDate, Label, Multiplier, RuleId, RuleModel

Metric = Literal["qualifying_points", "spend", "orders"]
Period = Literal["calendar_year", "rolling"]
TierReason = Literal[
    "initial",  # the base tier, nothing earned yet
    "upgraded",  # a threshold was reached
    "renewed",  # the review found the tier met again
    "requalified",  # the tier was met again during the grace period
    "grace",  # the review found the tier not met: kept until `downgrade_on`
    "downgraded",  # the grace ended without requalification
    "membership",  # a paid membership grants a higher tier
    "membership_ended",  # the membership ended: back to the earned tier
]

_UNITS: dict[Metric, tuple[str, str]] = {
    "qualifying_points": ("qualifying point", "qualifying points"),
    "spend": ("minor unit of spend", "minor units of spend"),
    "orders": ("order", "orders"),
}


class TierDefinition(RuleModel):
    """One tier: reached when the metric over the window is at least `threshold`."""

    code: RuleId
    name: Label | None = None
    threshold: Count
    earn_multiplier: Multiplier = Decimal(1)


class TierProgram(RuleModel):
    """The tier ladder and how it is qualified for. Tiers are listed lowest first, with
    strictly increasing thresholds, the first at 0."""

    metric: Metric
    period: Period
    rolling_months: int | None = Field(default=None, strict=True, ge=1, le=120)
    grace_days: int = Field(default=0, strict=True, ge=0, le=3650)
    tiers: tuple[TierDefinition, ...] = Field(min_length=1, max_length=50)

    @model_validator(mode="after")
    def _ladder(self) -> Self:
        if (self.period == "rolling") != (self.rolling_months is not None):
            raise ValueError("rolling_months is required for, and only for, a rolling period")
        if self.tiers[0].threshold != 0:
            raise ValueError("the first tier is the base tier: its threshold must be 0")
        for lower, higher in zip(self.tiers, self.tiers[1:], strict=False):
            if higher.threshold <= lower.threshold:
                raise ValueError("tier thresholds must increase strictly, lowest tier first")
        if len({tier.code for tier in self.tiers}) != len(self.tiers):
            raise ValueError("tier codes must be unique")
        return self

    def rank(self, code: str) -> int:
        for index, tier in enumerate(self.tiers):
            if tier.code == code:
                return index
        raise ValueError(f"unknown tier {code!r}")

    def window_start(self, end: date) -> date:
        """The first day of the qualification window that ends on `end` (inclusive)."""
        if self.rolling_months is None:
            return date(end.year, 1, 1)
        return add_months(end, -self.rolling_months) + ONE_DAY

    def period_end(self, day: date) -> date:
        """Until when a tier met on `day` is guaranteed."""
        if self.rolling_months is None:
            return year_end(day)
        return add_months(day, self.rolling_months)

    def next_period_end(self, guaranteed_until: date) -> date:
        """Until when a tier renewed at the review of `guaranteed_until` is guaranteed."""
        if self.rolling_months is None:
            return date(guaranteed_until.year + 1, 12, 31)
        return add_months(guaranteed_until, self.rolling_months)


@dataclass(frozen=True)
class QualifyingEvent:
    """A credit to the metric on a local date: positive for a purchase, negative for a
    refund or reversal (for ``orders``, +1 and -1)."""

    occurred_on: date
    amount: int


class Membership(RuleModel):
    """A paid membership: `tier` from `starts_on` through `ends_on` (local dates, inclusive)."""

    tier: RuleId
    starts_on: IsoDate
    ends_on: IsoDate

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.starts_on > self.ends_on:
            raise ValueError("membership: starts_on is after ends_on")
        return self


class EarnedTier(RuleModel):
    """The tier qualified for by the metric alone, memberships aside."""

    tier: RuleId
    since: IsoDate
    guaranteed_until: IsoDate | None = None
    reason: TierReason = "initial"

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.guaranteed_until is not None and self.guaranteed_until < self.since:
            raise ValueError("guaranteed_until is before since")
        return self


class TierStatus(RuleModel):
    """A member's tier status (what the projection stores).

    `tier`, `since`, `guaranteed_until` and `reason` describe the tier the member holds;
    `downgrade_on` is set during a grace period (the first day at the lower tier unless the
    member requalifies); `earned` is the tier qualified for without memberships.
    """

    tier: RuleId
    since: IsoDate
    guaranteed_until: IsoDate | None = None
    reason: TierReason = "initial"
    downgrade_on: IsoDate | None = None
    earned: EarnedTier


class Progress(RuleModel):
    """How far the member is from a tier: `needed` more of the metric (`current` counted so
    far in the relevant window), by `by` (None: a rolling window has no deadline)."""

    tier: RuleId
    metric: Metric
    current: int
    needed: int
    by: date | None

    def summary(self) -> str:
        """E.g. "420 more qualifying points by 2027-03-31 for gold"."""
        singular, plural = _UNITS[self.metric]
        text = f"{self.needed} more {singular if self.needed == 1 else plural}"
        if self.by is not None:
            text += f" by {self.by.isoformat()}"
        return f"{text} for {self.tier}"


class TierEvaluation(RuleModel):
    """The outcome of `evaluate_tier`: the new status to store, the progress to the tier above
    the one held (None at the top), and what it takes to keep the earned tier at its next
    review (None for the base tier)."""

    status: TierStatus
    next_tier: Progress | None
    retention: Progress | None


def initial_status(program: TierProgram, on: date) -> TierStatus:
    """A new member's status: the base tier from `on`."""
    base = program.tiers[0].code
    return TierStatus(tier=base, since=on, earned=EarnedTier(tier=base, since=on))


class _Metric:
    """Sums of signed events over date ranges (prefix sums over sorted dates)."""

    def __init__(self, events: Iterable[QualifyingEvent]) -> None:
        totals: dict[date, int] = {}
        for event in events:
            totals[event.occurred_on] = totals.get(event.occurred_on, 0) + event.amount
        self.dates = sorted(totals)
        self.prefix = [0, *accumulate(totals[day] for day in self.dates)]

    def total(self, first: date, last: date) -> int:
        """The sum of the events dated from `first` through `last`."""
        if last < first:
            return 0
        low = bisect.bisect_left(self.dates, first)
        high = bisect.bisect_right(self.dates, last)
        return self.prefix[high] - self.prefix[low]


@dataclass
class _Earned:
    rank: int
    since: date
    guaranteed_until: date | None
    reason: TierReason
    downgrade_on: date | None = None
    downgrade_to: int = 0

    def snapshot(self) -> tuple[object, ...]:
        return (self.rank, self.since, self.guaranteed_until, self.reason, self.downgrade_on)


class _Ladder:
    def __init__(self, program: TierProgram, events: Iterable[QualifyingEvent]) -> None:
        self.program = program
        self.metric = _Metric(events)

    def window_total(self, end: date, upto: date | None = None) -> int:
        last = end if upto is None else min(end, upto)
        return self.metric.total(self.program.window_start(end), last)

    def qualified(self, end: date) -> int:
        """The rank of the highest tier the window ending on `end` qualifies for."""
        total = self.window_total(end)
        rank = 0
        for index, tier in enumerate(self.program.tiers):
            if total >= tier.threshold:
                rank = index
        return rank

    def review(self, state: _Earned, day: date) -> None:
        """Rule 3: the review of the window that ended on `guaranteed_until`, and the
        downgrade once the grace is over. Loops while something is due on `day`."""
        program = self.program
        while True:
            until = state.guaranteed_until
            if until is not None and day > until and state.downgrade_on is None:
                reviewed = self.qualified(until)
                if reviewed >= state.rank:
                    state.reason = "upgraded" if reviewed > state.rank else "renewed"
                    if reviewed > state.rank:
                        state.rank, state.since = reviewed, day
                    state.guaranteed_until = program.next_period_end(until)
                else:
                    state.downgrade_on = until + ONE_DAY * (program.grace_days + 1)
                    state.downgrade_to = reviewed
                    state.reason = "grace"
                continue
            if state.downgrade_on is not None and day >= state.downgrade_on:
                assert until is not None  # a downgrade is only scheduled by a review
                now_qualified = self.qualified(day)
                state.downgrade_on = None
                if now_qualified >= state.rank:
                    state.reason = "requalified" if now_qualified == state.rank else "upgraded"
                    if now_qualified > state.rank:
                        state.rank, state.since = now_qualified, day
                    state.guaranteed_until = program.period_end(day)
                    continue
                state.rank = max(state.downgrade_to, now_qualified)
                state.since, state.reason = day, "downgraded"
                if state.rank == 0:
                    state.guaranteed_until = None
                else:
                    state.guaranteed_until = program.next_period_end(until)
                    if now_qualified == state.rank:
                        state.guaranteed_until = max(
                            state.guaranteed_until, program.period_end(day)
                        )
                continue
            return

    def event_day(self, state: _Earned, day: date) -> None:
        """Rules 1 and 2 on a day with qualifying events."""
        reached = self.qualified(day)
        if reached > state.rank:
            state.rank, state.since, state.reason = reached, day, "upgraded"
            state.guaranteed_until = self.program.period_end(day)
            state.downgrade_on = None
        elif reached == state.rank and state.rank > 0:
            assert state.guaranteed_until is not None
            state.guaranteed_until = max(state.guaranteed_until, self.program.period_end(day))
            if state.downgrade_on is not None:
                state.downgrade_on = None
                state.reason = "requalified"


def _membership_rank(program: TierProgram, memberships: Sequence[Membership], day: date) -> int:
    ranks = [program.rank(m.tier) for m in memberships if m.starts_on <= day <= m.ends_on]
    return max(ranks, default=-1)


def _covered_until(
    program: TierProgram, memberships: Sequence[Membership], rank: int, day: date
) -> date | None:
    """The last day of the unbroken run of memberships of at least `rank` covering `day`."""
    covering = [m for m in memberships if program.rank(m.tier) >= rank]
    end: date | None = None
    cursor = day
    extended = True
    while extended:
        extended = False
        for membership in covering:
            if membership.starts_on <= cursor <= membership.ends_on and (
                end is None or membership.ends_on > end
            ):
                end = membership.ends_on
                cursor = end + ONE_DAY
                extended = True
    return end


def evaluate_tier(
    program: TierProgram,
    events: Iterable[QualifyingEvent],
    status: TierStatus,
    memberships: Sequence[Membership],
    today: date,
) -> TierEvaluation:
    """The member's tier status on `today` (a local date), given their qualifying events (all
    of those dated from ``program.window_start(status.earned.since)`` on; older ones are
    ignored), the status stored at the last evaluation (or `initial_status`), and their paid
    memberships (past ones included).

    Replays every day on which something can change -- event days, review days, the end of a
    grace period, the start and the day after the end of a membership -- from the stored
    status to `today`. See the module docstring for the rules.
    """
    ranks = [program.rank(status.tier), program.rank(status.earned.tier)]
    for membership in memberships:
        program.rank(membership.tier)
    if today < status.since or today < status.earned.since:
        raise ValueError("today is before the status it starts from")
    listed = list(events)
    ladder = _Ladder(program, listed)
    earned = _Earned(
        rank=ranks[1],
        since=status.earned.since,
        guaranteed_until=status.earned.guaranteed_until,
        reason=status.earned.reason,
    )
    held_rank, held_since, held_reason = ranks[0], status.since, status.reason
    event_days = {e.occurred_on for e in listed if status.earned.since < e.occurred_on <= today}
    # A membership that began before the stored status is looked at on the status's first day.
    membership_days = {
        max(day, status.since)
        for m in memberships
        for day in (m.starts_on, m.ends_on + ONE_DAY)
        if day <= today
    }
    fixed_days = sorted(event_days | membership_days)
    index = 0
    cursor = min(status.since, status.earned.since) - ONE_DAY
    while True:
        candidates = list(fixed_days[index : index + 1])
        if earned.downgrade_on is not None:
            candidates.append(earned.downgrade_on)
        elif earned.guaranteed_until is not None:
            candidates.append(earned.guaranteed_until + ONE_DAY)
        candidates = [d for d in candidates if cursor < d <= today]
        if not candidates:
            break
        day = min(candidates)
        cursor = day
        while index < len(fixed_days) and fixed_days[index] <= day:
            index += 1
        before = earned.snapshot()
        if day > status.earned.since:
            ladder.review(earned, day)
            if day in event_days:
                ladder.event_day(earned, day)
        if day < status.since:
            continue
        from_membership = _membership_rank(program, memberships, day)
        rank = max(earned.rank, from_membership)
        if from_membership > earned.rank:
            reason: TierReason = "membership"
        elif rank != held_rank and earned.snapshot() == before:
            reason = "membership_ended"
        elif earned.snapshot() != before:
            reason = earned.reason
        else:
            reason = held_reason
        if rank != held_rank:
            held_since = day
        held_rank, held_reason = rank, reason

    held = program.tiers[held_rank].code
    covered = _covered_until(program, memberships, held_rank, today) if held_rank > 0 else None
    guaranteed: date | None = None
    if held_rank > 0:
        if earned.rank >= held_rank:
            guaranteed = earned.guaranteed_until
        if covered is not None:
            guaranteed = covered if guaranteed is None else max(guaranteed, covered)
    downgrade_on = earned.downgrade_on if earned.rank == held_rank else None
    if downgrade_on is not None and covered is not None and covered >= downgrade_on:
        downgrade_on = None
    new_status = TierStatus(
        tier=held,
        since=held_since,
        guaranteed_until=guaranteed,
        reason=held_reason,
        downgrade_on=downgrade_on,
        earned=EarnedTier(
            tier=program.tiers[earned.rank].code,
            since=earned.since,
            guaranteed_until=earned.guaranteed_until,
            reason=earned.reason,
        ),
    )
    return TierEvaluation(
        status=new_status,
        next_tier=_next_tier(program, ladder, held_rank, today),
        retention=_retention(program, ladder, earned, today),
    )


def _next_tier(program: TierProgram, ladder: _Ladder, rank: int, today: date) -> Progress | None:
    if rank + 1 >= len(program.tiers):
        return None
    target = program.tiers[rank + 1]
    current = ladder.window_total(today)
    return Progress(
        tier=target.code,
        metric=program.metric,
        current=current,
        needed=max(0, target.threshold - current),
        by=year_end(today) if program.rolling_months is None else None,
    )


def _retention(
    program: TierProgram, ladder: _Ladder, earned: _Earned, today: date
) -> Progress | None:
    if earned.rank == 0 or earned.guaranteed_until is None:
        return None
    tier = program.tiers[earned.rank]
    if earned.downgrade_on is not None:
        # In grace: requalify in the window ending on the day of a qualifying event.
        current, by = ladder.window_total(today), earned.downgrade_on - ONE_DAY
    else:
        # Not yet reviewed: the review counts the window ending on guaranteed_until.
        by = earned.guaranteed_until
        current = ladder.window_total(by, upto=today)
    return Progress(
        tier=tier.code,
        metric=program.metric,
        current=current,
        needed=max(0, tier.threshold - current),
        by=by,
    )
