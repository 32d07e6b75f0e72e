"""Tier status as a projection of the ledger: evaluation from a stored status or from scratch,
and the whole-ledger check (`verify`) and recomputation (`rebuild`).

A member's tier status is a fold of their qualifying events (the member side of the
`qualifying` asset, signed, by local date of the transaction's `occurred_at`) and their paid
memberships, by `app.rules.tiers.evaluate_tier`. *From scratch* means: the base tier from the
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

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from pydantic import ValidationError
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from app.rules.dates import ONE_DAY, local_date
from app.rules.tiers import (
    Membership,
    QualifyingEvent,
    TierEvaluation,
    TierProgram,
    TierStatus,
    evaluate_tier,
    initial_status,
)
from app.tiers import repository


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


def must_restart(
    days: Iterable[repository.EventDay], status: TierStatus, evaluated_on: date
) -> bool:
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


def qualifying_events(days: Iterable[repository.EventDay]) -> list[QualifyingEvent]:
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


# --- the whole ledger: verify and rebuild ------------------------------------------------------

BATCH = 200  # members per query (and per rebuild transaction, advisory locks included)

_TIER_PROGRAMS = text(
    "SELECT id, timezone, tier_program FROM programs WHERE tier_program IS NOT NULL ORDER BY id"
)
_MEMBERS = text(
    """
    SELECT m.id, m.created_at, t.tier, t.status, t.evaluated_on, t.updated_at
      FROM members m LEFT JOIN member_tiers t ON t.member_id = m.id
     WHERE m.program_id = :program_id AND m.id > :after
       AND (t.member_id IS NOT NULL OR NOT :stored_only)
     ORDER BY m.id LIMIT :limit
    """
)
_MEMBERS_BY_ID = text(
    """
    SELECT m.id, m.created_at, t.tier, t.status, t.evaluated_on, t.updated_at
      FROM members m LEFT JOIN member_tiers t ON t.member_id = m.id
     WHERE m.id = ANY(:ids) ORDER BY m.id
    """
)
_BATCH_EVENTS = text(
    """
    SELECT e.member_id, (t.occurred_at AT TIME ZONE :tz)::date AS day,
           sum(e.amount)::bigint AS amount,
           coalesce(sum(e.amount) FILTER (WHERE t.recorded_at <= s.updated_at), 0)::bigint
               AS seen
      FROM entries e JOIN transactions t ON t.id = e.transaction_id
      LEFT JOIN member_tiers s ON s.member_id = e.member_id
     WHERE e.member_id = ANY(:ids) AND e.asset = 'qualifying'
     GROUP BY 1, 2 ORDER BY 1, 2
    """
)
_BATCH_MEMBERSHIPS = text(
    """
    SELECT m.member_id, m.tier, m.starts_on, m.ends_on, (m.created_at <= s.updated_at) AS seen
      FROM memberships m LEFT JOIN member_tiers s ON s.member_id = m.member_id
     WHERE m.member_id = ANY(:ids) ORDER BY m.id
    """
)


@dataclass
class _MemberHistory:
    events: list[QualifyingEvent]
    seen_events: list[QualifyingEvent]
    memberships: list[Any]


async def _tier_programs(conn: AsyncConnection) -> list[tuple[int, str, TierProgram]]:
    found = []
    for row in await conn.execute(_TIER_PROGRAMS):
        try:
            found.append((row.id, row.timezone, TierProgram.model_validate(row.tier_program)))
        except ValidationError:
            continue  # a program whose tiers do not parse has no tiers to check
    return found


async def _batches(conn: AsyncConnection, program_id: int, *, stored_only: bool) -> Any:
    after = 0
    while True:
        rows = list(
            await conn.execute(
                _MEMBERS,
                {
                    "program_id": program_id,
                    "after": after,
                    "limit": BATCH,
                    "stored_only": stored_only,
                },
            )
        )
        if not rows:
            return
        yield rows
        after = rows[-1].id


async def _histories(
    conn: AsyncConnection, timezone: str, ids: list[int]
) -> dict[int, _MemberHistory]:
    histories: dict[int, _MemberHistory] = defaultdict(lambda: _MemberHistory([], [], []))
    for row in await conn.execute(_BATCH_EVENTS, {"ids": ids, "tz": timezone}):
        history = histories[row.member_id]
        if row.amount:
            history.events.append(QualifyingEvent(row.day, int(row.amount)))
        if row.seen:
            history.seen_events.append(QualifyingEvent(row.day, int(row.seen)))
    for row in await conn.execute(_BATCH_MEMBERSHIPS, {"ids": ids}):
        histories[row.member_id].memberships.append(row)
    return histories


async def tier_drift(conn: AsyncConnection, sample: int) -> list[dict[str, Any]]:
    """Members whose stored tier status differs from the one recomputed from scratch (their
    qualifying events and memberships, evaluated to the stored `evaluated_on`). A status
    that matches the events and memberships recorded by the time it was written is not drift:
    it is only not evaluated since (the next read or earn brings it up to date)."""
    offending: list[dict[str, Any]] = []
    for program_id, timezone, program in await _tier_programs(conn):
        async for rows in _batches(conn, program_id, stored_only=True):
            histories = await _histories(conn, timezone, [r.id for r in rows])
            for row in rows:
                problem = _drift(program, timezone, row, histories.get(row.id))
                if problem is not None:
                    offending.append({"program_id": program_id, "member_id": row.id, **problem})
                    if len(offending) >= sample:
                        return offending
    return offending


def _drift(
    program: TierProgram, timezone: str, row: Any, history: _MemberHistory | None
) -> dict[str, Any] | None:
    history = history or _MemberHistory([], [], [])
    enrolled_on = local_date(row.created_at, timezone)
    stored = parse_status(program, row.status)
    if stored is None:
        return {"stored": row.tier, "expected": None, "problem": "unreadable status"}
    if row.tier != stored.tier:
        return {"stored": row.tier, "expected": stored.tier, "problem": "tier column"}
    day = row.evaluated_on
    try:
        expected = from_scratch(
            program,
            enrolled_on,
            history.events,
            usable_memberships(program, history.memberships),
            day,
        ).status
        if expected == stored:
            return None
        seen = from_scratch(
            program,
            enrolled_on,
            history.seen_events,
            usable_memberships(program, [m for m in history.memberships if m.seen]),
            day,
        ).status
    except ValueError as exc:
        return {"stored": stored.tier, "expected": None, "problem": str(exc)}
    if seen == stored:
        return None
    return {
        "stored": stored.model_dump(mode="json"),
        "expected": expected.model_dump(mode="json"),
        "evaluated_on": day.isoformat(),
    }


async def rebuild_tiers(
    engine: AsyncEngine, *, program_id: int | None = None, now: datetime | None = None
) -> int:
    """Recompute every member's tier status (of every program with tiers, or of `program_id`)
    from scratch to today (local), in short transactions of a few hundred members each holding
    those members' advisory locks (so no earn or read evaluates a member while it is rebuilt).
    Returns how many stored statuses were wrong (those verify reports); the others are brought
    up to today too. Run it after changing a program's tiers, or stored statuses stay
    evaluated under the old ones until then (verify reports them)."""
    now = now or datetime.now(UTC)
    corrected = 0
    async with engine.connect() as conn:
        programs = await _tier_programs(conn)
        await conn.rollback()
    for program_id_, timezone, program in programs:
        if program_id is not None and program_id_ != program_id:
            continue
        today = local_date(now, timezone)
        after = 0
        while True:
            async with engine.begin() as conn:
                rows = list(
                    await conn.execute(
                        _MEMBERS,
                        {
                            "program_id": program_id_,
                            "after": after,
                            "limit": BATCH,
                            "stored_only": False,
                        },
                    )
                )
                if not rows:
                    break
                ids = [r.id for r in rows]
                after = ids[-1]
                await conn.execute(
                    text("SELECT lock_members(CAST(:ids AS bigint[]))"), {"ids": ids}
                )
                # read under the locks: an evaluation may have stored a status meanwhile
                rows = list(await conn.execute(_MEMBERS_BY_ID, {"ids": ids}))
                histories = await _histories(conn, timezone, ids)
                for row in rows:
                    history = histories.get(row.id) or _MemberHistory([], [], [])
                    status = from_scratch(
                        program,
                        local_date(row.created_at, timezone),
                        history.events,
                        usable_memberships(program, history.memberships),
                        today,
                    ).status
                    # wrong as of its own day (what verify reports) is a correction; a
                    # status merely not evaluated since, or never evaluated, is brought up
                    # to date without counting
                    if row.status is not None and _drift(program, timezone, row, history):
                        corrected += 1
                    stored = parse_status(program, row.status)
                    if stored == status and row.tier == status.tier and row.evaluated_on == today:
                        continue
                    await repository.save_status(conn, program_id_, row.id, status, today)
    return corrected
