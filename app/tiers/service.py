"""Tier status: evaluated lazily (on reads and earns) from the ledger, stored as a projection.

`refresh_tier` is the one entry point that brings a member's stored status up to a day. It
runs inside the caller's database transaction, which must hold the member's advisory lock
(`lock_members`), so two evaluations of one member never interleave.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

from app import errors
from app.db import MemberLocks, Session
from app.domain.dates import local_date
from app.domain.tiers import Progress, TierEvaluation, TierProgram
from app.ledger import idempotency
from app.ledger import members as ledger_members
from app.ledger.idempotency import fingerprint
from app.pagination import Cursor
from app.programs.models import Program
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


async def refresh_tier(
    locks: MemberLocks,
    program: Program,
    member_id: int,
    today: date,
    *,
    rebuild: bool = False,
) -> TierEvaluation:
    """The member's tier status on `today` (a local date of the program), stored when it
    changed. Runs under the member's lock (`locks` must hold it), so two evaluations of one
    member never interleave with each other or with a posting."""
    locks.require(member_id)
    tiers = program.tier_program
    assert tiers is not None
    stored, days = await repository.state(locks, program.id, member_id)
    result = projection.evaluate(tiers, program.timezone, stored, days, today, rebuild=rebuild)
    if result.changed:
        await repository.save_status(locks, program.id, member_id, result.status, today)
    return result.evaluation


# --- the HTTP operations -----------------------------------------------------------------------


def _today(program: Program) -> date:
    return local_date(datetime.now(UTC), program.timezone)


def require_tiers(program: Program) -> TierProgram:
    if program.tier_program is None:
        raise errors.TiersNotConfigured("this program has no tiers (set tier_program first)")
    return program.tier_program


async def get_tier(locks: MemberLocks, *, program: Program, external_id: str) -> MemberTier:
    """The member's tier, evaluated to today under the member's lock and stored."""
    require_tiers(program)
    member = locks.require_external_id(external_id)
    today = _today(program)
    evaluation = await refresh_tier(locks, program, member.member_id, today)
    return await _member_tier(locks, program, member.member_id, external_id, evaluation, today)


async def _member_tier(
    db: Session,
    program: Program,
    member_id: int,
    external_id: str,
    evaluation: TierEvaluation,
    today: date,
) -> MemberTier:
    tiers = require_tiers(program)
    status = evaluation.status
    definition = tiers.tiers[tiers.rank(status.tier)]
    rows = await repository.memberships(db, program.id, member_id)
    active = [
        r
        for r in rows
        if r["starts_on"] <= today <= r["ends_on"] and r["tier"] in {t.code for t in tiers.tiers}
    ]
    active.sort(key=lambda r: (tiers.rank(r["tier"]), r["ends_on"], r["id"]))
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
    return MembershipView(**dict(row))


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
    locks: MemberLocks,
    *,
    program: Program,
    key: str,
    external_id: str,
    request: GrantMembership,
) -> idempotency.Answer:
    """Record a paid membership and re-evaluate the member's tier with it (from scratch: the
    term may begin before the stored status)."""
    request_print = fingerprint(
        "grant_membership", {"member": external_id, **request.model_dump(mode="json")}
    )
    replay = await idempotency.claim(locks, program.id, key, request_print)
    if replay is not None:
        return replay
    tiers = require_tiers(program)
    codes = [tier.code for tier in tiers.tiers]
    if request.tier not in codes:
        raise errors.UnknownTier(f"no tier {request.tier!r} in this program (tiers: {codes})")
    starts_on, ends_on = term(program, request)
    member = locks.require_external_id(external_id)
    membership_id = await repository.insert_membership(
        locks,
        program_id=program.id,
        member_id=member.member_id,
        tier=request.tier,
        starts_on=starts_on,
        ends_on=ends_on,
        payment_ref=request.payment_ref,
    )
    today = _today(program)
    evaluation = await refresh_tier(locks, program, member.member_id, today, rebuild=True)
    rows = await repository.memberships(
        locks, program.id, member.member_id, after=membership_id - 1, limit=1
    )
    body = MembershipGranted(
        membership=_membership_view(rows[0]),
        tier=await _member_tier(locks, program, member.member_id, external_id, evaluation, today),
    )
    return await idempotency.complete(locks, program.id, key, 201, body.model_dump(mode="json"))


_MEMBERSHIPS = Cursor("m")


async def list_memberships(
    conn: Session,
    *,
    program: Program,
    external_id: str,
    limit: int,
    cursor: str | None,
) -> MembershipPage:
    """The member's memberships, oldest first (past, current and future)."""
    after = _MEMBERSHIPS.decode(cursor) if cursor else 0
    member_id = await ledger_members.require_member_id(
        conn, program_id=program.id, external_id=external_id
    )
    rows = await repository.memberships(conn, program.id, member_id, after=after, limit=limit + 1)
    page, next_cursor = _MEMBERSHIPS.page(rows, limit)
    return MembershipPage(items=[_membership_view(r) for r in page], next_cursor=next_cursor)
