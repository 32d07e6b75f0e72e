"""Referrals: the link made at enrolment, the bonus on the referee's first qualifying order,
and its clawback when that order is refunded inside the return window.

The decisions are the pure checks of `app.rules.referrals`; this module applies them inside
the caller's database transaction and posts the ledger transactions:

  reward    issuance -> referrer available (+referrer_points)
            issuance -> referee available  (+referee_points)      one `referral` transaction
            (a member in debt repays it first, as with every credit)
  clawback  referrer available -> issuance, referee available -> issuance
            one `referral` transaction, reason "referral clawed back"; at most what each member
            has available: the rest is written off (return policy `cap_at_zero`) or owed, in
            the member's `debt` account (`allow_negative`), exactly as refunds do.

Locking (why two referees of one referrer never deadlock, and never both slip under the cap).
The reward and the clawback run in a transaction that already holds the referee's advisory
lock (taken by the earn or the refund) and the referee's account rows. They then row-lock the
referrer's points accounts (`lock_member_accounts`), and only then count the referrer's rewards
of the month: concurrent referees of one referrer queue on those rows, and each counts after
the previous one committed (READ COMMITTED: a new snapshot per statement). The referrer's
*advisory* lock is deliberately not taken: advisory locks go in ascending member id order, and a
referrer always enrolled before its referee, so it would be taken out of order (a transfer from
referrer to referee, holding the referrer's advisory lock and waiting for the referee's, would
deadlock with us). Waiting for a referrer's account rows cannot close a cycle: whoever holds
them either finishes without waiting, or is itself an earn/refund of the referrer waiting for
*its* referrer's rows -- a chain that only goes up the referral tree, which has no cycles
(a member's referrer is fixed at its enrolment and was enrolled before it). Operations on two
members (transfers) take both advisory locks before any account row, so they wait for the
referee's lock without holding the referrer's rows. What would break this: one database
transaction posting earns for several members and calling `after_earn` for each (it could
hold one referrer's rows while waiting for another's). Event batches of programs with
referrals therefore post one event per transaction (app.events.service); were that to change,
PostgreSQL would detect such a deadlock and fail one transaction (40P01), never hang.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from app import errors
from app.ledger.idempotency import StoredResponse
from app.members import repository as members
from app.pagination import NEWEST, Cursor
from app.programs.models import Program
from app.referrals import repository
from app.referrals.schemas import Referral, ReferralPage
from app.rules.dates import add_months, local_date, start_of_day
from app.rules.referrals import (
    ReferralParty,
    ReferralReason,
    check_clawback,
    check_link,
    check_reward,
    normalize_code,
)

REWARD_REASON = "referral bonus"
CLAWBACK_REASON = "referral clawed back"

_REFUSALS: dict[ReferralReason, type[errors.ReferralRefused]] = {
    ReferralReason.SELF_REFERRAL: errors.SelfReferral,
    ReferralReason.SAME_EMAIL: errors.SelfReferralEmail,
    ReferralReason.SAME_PHONE: errors.SelfReferralPhone,
    ReferralReason.ALREADY_REFERRED: errors.AlreadyReferred,
}


def _party(contact: repository.Contact) -> ReferralParty:
    return ReferralParty(str(contact.member_id), contact.email, contact.phone)


async def link_at_enrolment(
    session: AsyncSession, *, program: Program, member_id: int, created: bool, code: str
) -> None:
    """Record that the member enrolling now (`created`) was referred by the owner of `code`,
    as a pending referral, in the enrolment's transaction. Enrolling an existing member again
    with the code of its referrer is accepted as it stands (a retry); any other code on an
    existing member is refused. Raises a 422 error with a stable code otherwise."""
    normalized = normalize_code(code)
    referrer = (
        await repository.member_by_code(session, program_id=program.id, code=normalized)
        if normalized
        else None
    )
    if referrer is None:
        raise errors.ReferralCodeUnknown(f"no member of this program has the code {code!r}")
    referred_by = await repository.referrer_of(session, referee_id=member_id)
    if referred_by == referrer.member_id and referrer.member_id != member_id:
        return
    referee = await repository.contact(session, member_id=member_id)
    decision = check_link(
        _party(referrer),
        _party(referee),
        referee_referred_by=None if referred_by is None else str(referred_by),
    )
    if not decision.allowed:
        raise _REFUSALS[decision.reason](_refusal_detail(decision.reason))
    if not created:
        raise errors.AlreadyEnrolled(
            "the member was enrolled before; a referral code only counts at enrolment"
        )
    if not await repository.insert(
        session, program_id=program.id, referrer_id=referrer.member_id, referee_id=member_id
    ):
        raise errors.AlreadyReferred(_refusal_detail(ReferralReason.ALREADY_REFERRED))


def _refusal_detail(reason: ReferralReason) -> str:
    return {
        ReferralReason.SELF_REFERRAL: "the code is the member's own",
        ReferralReason.SAME_EMAIL: "the referrer has the same e-mail address as the member",
        ReferralReason.SAME_PHONE: "the referrer has the same phone number as the member",
        ReferralReason.ALREADY_REFERRED: "the member already has a referrer; it is never replaced",
    }.get(reason, reason.value)


def _month_bounds(instant: datetime, timezone: str) -> tuple[datetime, datetime]:
    """The first instants of the program-local calendar month of `instant` and of the next."""
    day = local_date(instant, timezone)
    first = date(day.year, day.month, 1)
    return start_of_day(first, timezone), start_of_day(add_months(first, 1), timezone)


async def _external_ids(
    db: AsyncConnection | AsyncSession, member_ids: list[int]
) -> dict[int, str]:
    rows = await db.execute(
        text("SELECT id, external_id FROM members WHERE id = ANY (CAST(:ids AS bigint[]))"),
        {"ids": member_ids},
    )
    return {row.id: row.external_id for row in rows}


async def after_earn(
    conn: AsyncConnection,
    program: Program,
    member_id: int,
    order_id: str | None,
    earning_base: int,
    occurred_at: datetime,
) -> int | None:
    """Reward the member's pending referral if this earn is its first qualifying order.

    Called by the earn inside its database transaction, after its posting, holding the
    member's advisory lock. Returns the id of the `referral` transaction, or None when there
    is nothing to reward: referrals off, no open referral, no order, an order below the
    minimum, or the referrer at the monthly cap for the order's local month (the referral is
    then marked `cap_reached` and a later qualifying order may still earn it). The order
    counts by `earning_base`, the order's amount the rules earn on, in minor units.
    """
    policy = program.referral_policy
    if policy is None or order_id is None or earning_base < policy.min_order_amount:
        return None
    referral = await repository.open_referral(conn, referee_id=member_id)
    if referral is None:
        return None
    # Serialise the referrer's rewards on its account rows (see the module docstring).
    await repository.lock_accounts(
        conn, program_id=program.id, member_ids=[referral.referrer_id, member_id]
    )
    start, end = _month_bounds(occurred_at, program.timezone)
    decision = check_reward(
        policy,
        order_amount=earning_base,
        already_rewarded=False,
        referrer_rewards_this_month=await repository.rewards_between(
            conn, referrer_id=referral.referrer_id, start=start, end=end
        ),
    )
    if not decision.allowed:
        if decision.reason is ReferralReason.MONTHLY_CAP and referral.status != "cap_reached":
            await repository.mark_cap_reached(conn, referral_id=referral.id)
        return None

    transaction_id: int | None = None
    if policy.referrer_points or policy.referee_points:
        referrer_ids, referrer_amounts = await repository.credit_legs(
            conn, program_id=program.id, member_id=referral.referrer_id,
            points=policy.referrer_points,
        )  # fmt: skip
        referee_ids, referee_amounts = await repository.credit_legs(
            conn, program_id=program.id, member_id=member_id, points=policy.referee_points
        )
        names = await _external_ids(conn, [referral.referrer_id, member_id])
        transaction_id = await repository.post(
            conn,
            program_id=program.id,
            member_id=member_id,
            occurred_at=occurred_at,
            account_ids=[program.accounts["issuance"], *referrer_ids, *referee_ids],
            amounts=[
                -(policy.referrer_points + policy.referee_points),
                *referrer_amounts,
                *referee_amounts,
            ],
            order_id=order_id,
            reason=REWARD_REASON,
            metadata={
                "referral_id": referral.id,
                "referrer": names[referral.referrer_id],
                "referee": names[member_id],
                "referrer_points": policy.referrer_points,
                "referee_points": policy.referee_points,
                "order_amount": earning_base,
            },
            key=f"referral:{referral.id}",
        )
    await repository.mark_rewarded(
        conn,
        referral_id=referral.id,
        order_id=order_id,
        order_amount=earning_base,
        order_occurred_at=occurred_at,
        transaction_id=transaction_id,
    )
    return transaction_id


@dataclass(frozen=True)
class _Take:
    """What a clawback takes from one member."""

    points: int  # the bonus the member got
    taken: int  # from available
    owed: int  # into debt (allow_negative)
    written_off: int  # not taken (cap_at_zero)


def _take(points: int, available: int, return_policy: str) -> _Take:
    taken = min(points, max(available, 0))
    rest = points - taken
    if return_policy == "allow_negative":
        return _Take(points, taken, rest, 0)
    return _Take(points, taken, 0, rest)


def _refunded_base(referral: repository.RewardedReferral) -> int:
    """How much of the order's earning base has been refunded, in proportion to the money
    refunded (the earning base may be less than the order total, e.g. without gift cards)."""
    total = referral.order_total or 0
    if total <= 0:
        return referral.order_amount
    left = referral.order_amount * max(total - referral.order_refunded, 0) // total
    return referral.order_amount - left


@dataclass(frozen=True)
class Clawback:
    """A posted clawback: its transaction, and the referee (whose balance it changed)."""

    transaction_id: int
    referee_id: int


async def after_refund(
    conn: AsyncConnection, *, program: Program, order_id: str
) -> Clawback | None:
    """Claw back the referral bonus of `order_id` if this refund (already applied, in this
    transaction, holding the referee's advisory lock) takes the order below the minimum
    inside the return window. Returns the clawback posted (None if nothing was taken back).
    A referral is clawed back once: its status changes in the same transaction."""
    policy = program.referral_policy
    if policy is None:
        return None
    referral = await repository.rewarded_for_order(conn, program_id=program.id, order_id=order_id)
    if referral is None:
        return None
    decision = check_clawback(
        policy,
        order_occurred_at=referral.order_occurred_at,
        order_amount=referral.order_amount,
        refunded_at=referral.now,
        refunded_total=_refunded_base(referral),
    )
    if not decision.clawback:
        return None
    await repository.lock_accounts(
        conn, program_id=program.id, member_ids=[referral.referrer_id, referral.referee_id]
    )
    referrer = await repository.member_points(
        conn, program_id=program.id, member_id=referral.referrer_id
    )
    referee = await repository.member_points(
        conn, program_id=program.id, member_id=referral.referee_id
    )
    from_referrer = _take(referral.referrer_points, referrer.available, program.return_policy)
    from_referee = _take(referral.referee_points, referee.available, program.return_policy)
    moved = sum(t.taken + t.owed for t in (from_referrer, from_referee))
    transaction_id: int | None = None
    if moved > 0:
        names = await _external_ids(conn, [referral.referrer_id, referral.referee_id])
        transaction_id = await repository.post(
            conn,
            program_id=program.id,
            member_id=referral.referee_id,
            occurred_at=referral.now,
            account_ids=[
                referrer.available_account,
                referrer.debt_account,
                referee.available_account,
                referee.debt_account,
                program.accounts["issuance"],
            ],
            amounts=[
                -from_referrer.taken,
                -from_referrer.owed,
                -from_referee.taken,
                -from_referee.owed,
                moved,
            ],
            order_id=order_id,
            reason=CLAWBACK_REASON,
            metadata={
                "referral_id": referral.id,
                "reward_transaction_id": referral.reward_transaction_id,
                "referrer": names[referral.referrer_id],
                "referee": names[referral.referee_id],
                **_clawback_metadata("referrer", from_referrer),
                **_clawback_metadata("referee", from_referee),
            },
            key=f"referral-clawback:{referral.id}",
        )
    await repository.mark_clawed_back(conn, referral_id=referral.id, transaction_id=transaction_id)
    return None if transaction_id is None else Clawback(transaction_id, referral.referee_id)


def _clawback_metadata(role: str, take: _Take) -> dict[str, Any]:
    return {
        f"{role}_points_taken_back": take.taken + take.owed,
        f"{role}_points_written_off": take.written_off,
    }


async def with_current_balance(
    conn: AsyncConnection, *, program: Program, key: str, stored: StoredResponse, member_id: int
) -> StoredResponse:
    """A stored response (the refund's, or the earn's) with `balance` as of now, after the
    referral posting; the stored copy is updated too, so replays see the same."""
    body = await repository.refresh_stored_balance(
        conn, program_id=program.id, key=key, member_id=member_id
    )
    return StoredResponse(status=stored.status, body=body, replayed=stored.replayed)


# Listing --------------------------------------------------------------------------------------

_REFERRALS = Cursor("r")


async def made_by(
    conn: AsyncConnection, *, program: Program, external_id: str, limit: int, cursor: str | None
) -> ReferralPage:
    """The referrals a member made, newest first (cursor-paginated)."""
    before = _REFERRALS.decode(cursor) if cursor else NEWEST
    member_id = await members.require_member_id(
        conn, program_id=program.id, external_id=external_id
    )
    rows = await repository.made_by(conn, referrer_id=member_id, before=before, limit=limit + 1)
    items, next_cursor = _REFERRALS.page(rows, limit)
    return ReferralPage(
        items=[Referral.model_validate(row, from_attributes=True) for row in items],
        next_cursor=next_cursor,
    )
