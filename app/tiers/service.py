"""Tier status: evaluated lazily (on reads and earns) from the ledger, stored as a projection.

`refresh_tier` is the one entry point that brings a member's stored status up to a day. It
runs inside the caller's database transaction, which must hold the member's advisory lock
(`lock_members`), so two evaluations of one member never interleave.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from app import errors
from app.ledger import idempotency
from app.ledger.fingerprint import fingerprint
from app.members import repository as members
from app.pagination import Cursor
from app.programs.models import Program
from app.rules.dates import ONE_DAY, local_date, start_of_day
from app.rules.tiers import (
    Membership,
    Progress,
    TierEvaluation,
    TierProgram,
    TierStatus,
)
from app.tiers import projection, repository
from app.tiers.schemas import (
    EarnedTierView,
    GrantMembership,
    MembershipGranted,
    MembershipPage,
    MembershipView,
    MemberTier,
    ProgressView,
    TierInfo,
)

# Membership terms are refused outside these years (and the rules' date arithmetic with them).
EARLIEST_TERM = date(1900, 1, 1)
LATEST_TERM = date(2999, 12, 31)


async def stored_tier(
    conn: AsyncConnection, program: Program, member_id: int
) -> repository.StoredTier | None:
    """What `refresh_tier` starts from (None when the program has no tiers): read it once
    for several evaluations in one transaction that store nothing in between."""
    if program.tier_program is None:
        return None
    return await repository.stored_tier(conn, member_id)


async def refresh_tier(
    conn: AsyncConnection,
    program: Program,
    member_id: int,
    today: date,
    *,
    stored: repository.StoredTier | None = None,
    save: bool = True,
) -> TierStatus | None:
    """The member's tier status on `today` (a local date of the program), stored in
    `member_tiers` when it changed; None when the program has no tiers.

    Evaluates from the stored status (or, for a member never evaluated, from the base tier on
    their first day) with their qualifying events and memberships. Call it inside a database
    transaction holding the member's advisory lock (`SELECT lock_members(ARRAY[id])`).
    `save=False` only reads: for an evaluation that a later one in the same transaction
    supersedes (an earn evaluates before posting, for the multiplier, and stores after);
    `stored` is the `stored_tier` already read in this transaction, if any."""
    evaluation = await evaluate_member(conn, program, member_id, today, stored=stored, save=save)
    return None if evaluation is None else evaluation.status


async def evaluate_member(
    conn: AsyncConnection,
    program: Program,
    member_id: int,
    today: date,
    *,
    rebuild: bool = False,
    stored: repository.StoredTier | None = None,
    save: bool = True,
) -> TierEvaluation | None:
    """`refresh_tier`, returning the whole evaluation (with the progress figures).
    `rebuild` evaluates from scratch even when a stored status could be resumed."""
    tiers = program.tier_program
    if tiers is None:
        return None
    timezone = program.timezone
    stored = stored or await repository.stored_tier(conn, member_id)
    memberships = projection.usable_memberships(tiers, stored.terms)
    previous = projection.parse_status(tiers, stored.status)
    evaluation: TierEvaluation | None = None
    if previous is not None and not rebuild and _resumable(previous, stored.evaluated_on, today):
        evaluation = await _resume(
            conn, tiers, timezone, member_id, previous, stored, memberships, today
        )
        scratch = evaluation is None
    else:
        scratch = True
    if evaluation is None:
        days = await repository.event_days(conn, member_id, timezone, None, None)
        evaluation = projection.from_scratch(
            tiers,
            local_date(stored.created_at, timezone),
            projection.qualifying_events(days),
            memberships,
            today,
        )
    if save and (scratch or evaluation.status != previous):
        await repository.save_status(conn, program.id, member_id, evaluation.status, today)
    return evaluation


def _resumable(status: TierStatus, evaluated_on: date | None, today: date) -> bool:
    """Can the evaluation go on from the stored status? Not backwards in time."""
    latest = max(status.since, status.earned.since, evaluated_on or status.since)
    return today >= latest


async def _resume(
    conn: AsyncConnection,
    tiers: TierProgram,
    timezone: str,
    member_id: int,
    status: TierStatus,
    stored: repository.StoredTier,
    memberships: list[Membership],
    today: date,
) -> TierEvaluation | None:
    """The evaluation from the stored status; None when it must start from scratch instead
    (`projection.must_restart`: credit recorded since, dated before the stored day)."""
    first = tiers.window_start(status.earned.since - ONE_DAY)
    days = await repository.event_days(
        conn, member_id, timezone, start_of_day(first, timezone), stored.watermark
    )
    if stored.evaluated_on is None or projection.must_restart(days, status, stored.evaluated_on):
        return None
    events = projection.qualifying_events(days)
    return projection.evaluate_from(tiers, events, status, memberships, today)


# --- the HTTP operations -----------------------------------------------------------------------


def _today(program: Program) -> date:
    return local_date(datetime.now(UTC), program.timezone)


def _require_tiers(program: Program) -> TierProgram:
    if program.tier_program is None:
        raise errors.TiersNotConfigured("this program has no tiers (set tier_program first)")
    return program.tier_program


async def get_tier(session: AsyncSession, *, program: Program, external_id: str) -> MemberTier:
    """The member's tier, evaluated to today under the member's lock and stored."""
    tiers = _require_tiers(program)
    conn = await session.connection()
    member_id = await members.require_member_id(
        conn, program_id=program.id, external_id=external_id
    )
    await repository.lock_member(conn, member_id)
    today = _today(program)
    evaluation = await evaluate_member(conn, program, member_id, today)
    assert evaluation is not None
    return await _member_tier(conn, tiers, member_id, external_id, evaluation, today)


async def _member_tier(
    conn: AsyncConnection,
    tiers: TierProgram,
    member_id: int,
    external_id: str,
    evaluation: TierEvaluation,
    today: date,
) -> MemberTier:
    status = evaluation.status
    definition = tiers.tiers[tiers.rank(status.tier)]
    rows = await repository.memberships(conn, member_id)
    active = [
        r
        for r in rows
        if r.starts_on <= today <= r.ends_on and r.tier in {t.code for t in tiers.tiers}
    ]
    active.sort(key=lambda r: (tiers.rank(r.tier), r.ends_on, r.id))
    return MemberTier(
        member=external_id,
        tier=TierInfo(
            code=definition.code, name=definition.name, earn_multiplier=definition.earn_multiplier
        ),
        since=status.since,
        guaranteed_until=status.guaranteed_until,
        reason=status.reason,
        downgrade_on=status.downgrade_on,
        earned=EarnedTierView(**status.earned.model_dump()),
        progress=_progress(evaluation.next_tier),
        retention=_progress(evaluation.retention),
        membership=_membership_view(active[-1]) if active else None,
        evaluated_on=today,
    )


def _progress(progress: Progress | None) -> ProgressView | None:
    if progress is None:
        return None
    return ProgressView(**progress.model_dump(), summary=progress.summary())


def _membership_view(row: Any) -> MembershipView:
    return MembershipView(
        id=row.id,
        member=row.member,
        tier=row.tier,
        starts_on=row.starts_on,
        ends_on=row.ends_on,
        payment_ref=row.payment_ref,
        created_at=row.created_at,
    )


def term(program: Program, request: GrantMembership) -> tuple[date, date]:
    """The membership's first and last local day: a date as given; an instant's local date
    (for `ends_at`, the local date of the instant just before it: the end is exclusive)."""
    timezone = program.timezone
    starts = request.starts_at
    ends = request.ends_at
    starts_on = local_date(starts, timezone) if isinstance(starts, datetime) else starts
    if isinstance(ends, datetime):
        ends_on = local_date(ends - timedelta(microseconds=1), timezone)
    else:
        ends_on = ends
    if not (EARLIEST_TERM <= starts_on <= LATEST_TERM and EARLIEST_TERM <= ends_on <= LATEST_TERM):
        raise errors.MembershipTermInvalid(
            f"membership dates must lie from {EARLIEST_TERM} to {LATEST_TERM}"
        )
    if ends_on < starts_on:
        raise errors.MembershipTermInvalid(
            f"the membership ends ({ends_on}) before it starts ({starts_on})"
        )
    return starts_on, ends_on


async def grant_membership(
    session: AsyncSession,
    *,
    program: Program,
    key: str,
    external_id: str,
    request: GrantMembership,
) -> idempotency.StoredResponse:
    """Record a paid membership and re-evaluate the member's tier with it (from scratch: the
    term may begin before the stored status)."""
    request_print = fingerprint(
        "grant_membership", {"member": external_id, **request.model_dump(mode="json")}
    )
    replay = await idempotency.claim(session, program.id, key, request_print)
    if replay is not None:
        return replay
    tiers = _require_tiers(program)
    codes = [tier.code for tier in tiers.tiers]
    if request.tier not in codes:
        raise errors.UnknownTier(f"no tier {request.tier!r} in this program (tiers: {codes})")
    starts_on, ends_on = term(program, request)
    conn = await session.connection()
    member_id = await members.require_member_id(
        conn, program_id=program.id, external_id=external_id
    )
    await repository.lock_member(conn, member_id)
    membership_id = await repository.insert_membership(
        conn,
        program_id=program.id,
        member_id=member_id,
        tier=request.tier,
        starts_on=starts_on,
        ends_on=ends_on,
        payment_ref=request.payment_ref,
    )
    today = _today(program)
    evaluation = await evaluate_member(conn, program, member_id, today, rebuild=True)
    assert evaluation is not None
    rows = await repository.memberships(conn, member_id, after=membership_id - 1, limit=1)
    body = MembershipGranted(
        membership=_membership_view(rows[0]),
        tier=await _member_tier(conn, tiers, member_id, external_id, evaluation, today),
    )
    return await idempotency.complete(session, program.id, key, 201, body.model_dump(mode="json"))


_MEMBERSHIPS = Cursor("m")


async def list_memberships(
    conn: AsyncConnection,
    *,
    program: Program,
    external_id: str,
    limit: int,
    cursor: str | None,
) -> MembershipPage:
    """The member's memberships, oldest first (past, current and future)."""
    after = _MEMBERSHIPS.decode(cursor) if cursor else 0
    member_id = await members.require_member_id(
        conn, program_id=program.id, external_id=external_id
    )
    rows = await repository.memberships(conn, member_id, after=after, limit=limit + 1)
    page, next_cursor = _MEMBERSHIPS.page(rows, limit)
    return MembershipPage(items=[_membership_view(r) for r in page], next_cursor=next_cursor)
