"""Tier status as a projection of the ledger: evaluation from a stored status or from scratch.
No I/O: the caller reads the inputs (app.tiers.repository) and stores the result.

A member's tier status is a fold of their qualifying events (the member side of the
`qualifying` asset, signed, by local date of the transaction's `occurred_at`) and their paid
memberships, by `app.domain.tiers.evaluate_tier`. *From scratch* means: the base tier from the
member's first day -- the earlier of the local enrolment date and the first event's date (a
backdated or imported earn can precede enrolment) -- evaluated to a given day.

Events are daily net totals: the tier follows each local day's closing total. An order bought
and refunded the same day never counted; a refund on a later day counts at the next review.

`evaluate_tier` replays days strictly after the stored `earned.since`; a second purchase on
the day of an upgrade (or on the enrolment day) would then never count as an event. So every
evaluation here starts from the status with `earned.since` moved one day back (`_step_back`)
and puts the original date back when nothing changed it. Credit recorded after a status was
stored but dated before the day it was evaluated to cannot be replayed from it
(`must_restart`): such an evaluation starts from scratch. From scratch and from a stored
status then agree, which is what `verify` checks.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from typing import Any

from pydantic import ValidationError

from app.domain.dates import ONE_DAY, local_date
from app.domain.tiers import (
    Membership,
    QualifyingEvent,
    TierEvaluation,
    TierProgram,
    TierStatus,
    evaluate_tier,
    initial_status,
)

# A stored status is taken to include the credit recorded up to this long before it was written
# (see `must_restart` for the credit recorded later): postings that began before an evaluation
# may commit just after it.
LATE_MARGIN = timedelta(minutes=5)


@dataclass(frozen=True)
class MembershipTerm:
    """A paid membership's tier and days (inclusive), as the tier rules need it."""

    tier: str
    starts_on: date
    ends_on: date


@dataclass(frozen=True)
class StoredTier:
    """What is stored about a member's tier: enrolment time, the last evaluated status (None
    when never evaluated; `status` is the raw JSON, validated here), the day it was evaluated
    to, the watermark (credit recorded after it is "late" for that status), and the member's
    membership terms, oldest first."""

    created_at: datetime
    status: Any
    evaluated_on: date | None
    watermark: datetime | None
    terms: tuple[MembershipTerm, ...]


@dataclass(frozen=True)
class EventDay:
    """A member's net qualifying credit on a local day; `late`: some of it was recorded after
    the stored status was written (`late_negative`: some of that was a take-back)."""

    day: date
    amount: int
    late: bool = False
    late_negative: bool = False


def _step_back(status: TierStatus) -> TierStatus:
    return status.model_copy(
        update={
            "earned": status.earned.model_copy(update={"since": status.earned.since - ONE_DAY}),
        }
    )


def evaluate_from(
    program: TierProgram,
    events: Iterable[QualifyingEvent],
    status: TierStatus,
    memberships: Sequence[Membership],
    today: date,
) -> TierEvaluation:
    """`evaluate_tier` from a stored `status`, replaying its own first day too (see the module
    docstring). `events` must include those from ``window_start(status.earned.since - 1 day)``."""
    back = _step_back(status)
    evaluation = evaluate_tier(program, events, back, memberships, today)
    result = evaluation.status
    earned = result.earned
    if earned.since == back.earned.since:
        earned = earned.model_copy(update={"since": status.earned.since})
    restored = result.model_copy(update={"earned": earned})
    return evaluation.model_copy(update={"status": restored})


def must_restart(days: Iterable[EventDay], status: TierStatus, evaluated_on: date) -> bool:
    """Must the evaluation start again from scratch rather than from the stored `status`
    (evaluated to `evaluated_on`)? Yes when credit recorded after the status was written is
    dated before `evaluated_on` (a backdated posting: it counts on its own day, which the
    stored status is already past), or is dated `evaluated_on` itself while that day's total
    can no longer be replayed from the status: a take-back (the day's net total, which the
    status may have upgraded on, went down), or more credit on a day the status changed (the
    status no longer says what the member held that morning). More credit on an unchanged
    day, and credit dated later, is simply replayed."""
    changed_that_day = evaluated_on in (status.since, status.earned.since)
    return any(
        d.late
        and (
            d.day < evaluated_on
            or (d.day == evaluated_on and (d.late_negative or changed_that_day))
        )
        for d in days
    )


def qualifying_events(days: Iterable[EventDay]) -> list[QualifyingEvent]:
    """The rules' events: one per local day with a net credit (a day that nets to zero, an
    order refunded the day it was bought, is no event)."""
    return [QualifyingEvent(d.day, d.amount) for d in days if d.amount]


def first_day(enrolled_on: date, events: Sequence[QualifyingEvent], today: date) -> date:
    """The day a from-scratch evaluation starts: enrolment, or an earlier event."""
    return min([enrolled_on, today, *(e.occurred_on for e in events)])


def from_scratch(
    program: TierProgram,
    enrolled_on: date,
    events: Sequence[QualifyingEvent],
    memberships: Sequence[Membership],
    today: date,
) -> TierEvaluation:
    """The status on `today` from the base tier on the member's first day."""
    start = initial_status(program, first_day(enrolled_on, events, today))
    return evaluate_from(program, events, start, memberships, today)


def usable_memberships(program: TierProgram, rows: Iterable[Any]) -> list[Membership]:
    """Memberships of tiers the program still has (a removed tier grants nothing)."""
    codes = {tier.code for tier in program.tiers}
    return [
        Membership(tier=r.tier, starts_on=r.starts_on, ends_on=r.ends_on)
        for r in rows
        if r.tier in codes
    ]


def parse_status(program: TierProgram, raw: Any) -> TierStatus | None:
    """A stored status, or None if it cannot be resumed (unreadable, or naming a tier the
    program no longer has)."""
    if raw is None:
        return None
    try:
        status = TierStatus.model_validate(raw)
        program.rank(status.tier)
        program.rank(status.earned.tier)
    except (ValidationError, ValueError):
        return None
    return status


def _resumable(status: TierStatus, evaluated_on: date | None, today: date) -> bool:
    """Can the evaluation go on from the stored status? Not backwards in time."""
    latest = max(status.since, status.earned.since, evaluated_on or status.since)
    return today >= latest


@dataclass(frozen=True)
class Evaluation:
    """A tier evaluation and whether it must be stored (it started from scratch, or the
    status changed)."""

    evaluation: TierEvaluation
    changed: bool

    @property
    def status(self) -> TierStatus:
        return self.evaluation.status


def evaluate(
    tiers: TierProgram,
    timezone: str,
    stored: StoredTier,
    days: Sequence[EventDay],
    today: date,
    *,
    rebuild: bool = False,
) -> Evaluation:
    """The member's tier status on `today`: from the stored status when it can be resumed
    (then from the days since its window started), otherwise from scratch from the base tier
    on the member's first day. `days` are all the member's days with qualifying credit."""
    memberships = usable_memberships(tiers, stored.terms)
    previous = parse_status(tiers, stored.status)
    if (
        previous is not None
        and not rebuild
        and stored.evaluated_on is not None
        and _resumable(previous, stored.evaluated_on, today)
    ):
        first = tiers.window_start(previous.earned.since - ONE_DAY)
        since = [d for d in days if d.day >= first]
        if not must_restart(since, previous, stored.evaluated_on):
            evaluation = evaluate_from(
                tiers, qualifying_events(since), previous, memberships, today
            )
            return Evaluation(evaluation, evaluation.status != previous)
    evaluation = from_scratch(
        tiers,
        local_date(stored.created_at, timezone),
        qualifying_events(days),
        memberships,
        today,
    )
    return Evaluation(evaluation, True)


def with_credit(days: Sequence[EventDay], day: date, amount: int) -> list[EventDay]:
    """`days` with `amount` more credit on `day`, recorded now (late for the stored status)."""
    found = False
    changed: list[EventDay] = []
    for existing in days:
        if existing.day == day:
            found = True
            existing = replace(
                existing,
                amount=existing.amount + amount,
                late=True,
                late_negative=existing.late_negative or amount < 0,
            )
        changed.append(existing)
    if not found:
        changed.append(EventDay(day, amount, late=True, late_negative=amount < 0))
        changed.sort(key=lambda d: d.day)
    return changed


def stored_after(stored: StoredTier, status: TierStatus, today: date, now: datetime) -> StoredTier:
    """What is stored once `status` is saved, evaluated to `today` (watermark: now, less the
    margin for postings in flight)."""
    return replace(
        stored,
        status=status.model_dump(mode="json"),
        evaluated_on=today,
        watermark=now - LATE_MARGIN,
    )


def status_json(status: TierStatus, today: date) -> dict[str, Any]:
    """The tier status as the engine stores it (member_tiers)."""
    return {
        "tier": status.tier,
        "status": status.model_dump(mode="json"),
        "evaluated_on": today.isoformat(),
    }
