"""Referrals: the link made at enrolment, the bonus on the referee's first qualifying order,
and its clawback when that order is refunded inside the return window.

The decisions are the pure checks of `app.domain.referrals`; this module applies them inside
the caller's database transaction and posts the ledger transactions:

  reward    issuance -> referrer available (+referrer_points)
            issuance -> referee available  (+referee_points)      one `referral` transaction
            (a member in debt repays it first, as with every credit)
  clawback  referrer available -> issuance, referee available -> issuance
            one `referral` transaction, reason "referral clawed back"; at most what each member
            has available: the rest is written off (return policy `cap_at_zero`) or owed, in
            the member's `debt` account (`allow_negative`), exactly as refunds do.

Locking. The reward and the clawback lock both members, referrer and referee, before anything
else (`Database.lock_members`: their rows, in ascending id order, like every posting), and only
then read the referral again and count the referrer's rewards of the month: concurrent referees
of one referrer queue on the referrer's row, and each counts after the previous one committed,
so two of them never both slip under the cap. The reward runs after the earn has committed,
in a transaction of its own (the earn is group-committed with other requests); if the process
dies in between, `points-ledger worker` finds the referral still pending with a qualifying
order and rewards it then.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from app import errors
from app.db import Database, MemberLocks, Session, Transaction
from app.domain.dates import add_months, local_date, start_of_day
from app.domain.expiry import lot_expires_at
from app.domain.referrals import (
    ReferralParty,
    ReferralReason,
    check_clawback,
    check_link,
    check_reward,
    member_id_for,
    normalize_code,
)
from app.ledger import members as ledger_members
from app.ledger.posting import Posting, post
from app.pagination import NEWEST, Cursor
from app.programs.models import Program
from app.referrals import repository
from app.referrals.schemas import Referral, ReferralPage

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
    tx: Transaction, *, program: Program, member_id: int, created: bool, code: str
) -> None:
    """Record that the member enrolling now (`created`) was referred by the owner of `code`,
    as a pending referral, in the enrolment's transaction. Enrolling an existing member again
    with the code of its referrer is accepted as it stands (a retry); any other code on an
    existing member is refused. Raises a 422 error with a stable code otherwise."""
    normalized = normalize_code(code)
    owner = member_id_for(normalized) if normalized else None
    referrer = (
        await repository.contact(tx, program_id=program.id, member_id=owner)
        if owner is not None
        else None
    )
    if referrer is None:
        raise errors.ReferralCodeUnknown(f"no member of this program has the code {code!r}")
    referred_by = await repository.referrer_of(tx, program_id=program.id, referee_id=member_id)
    if referred_by == referrer.member_id and referrer.member_id != member_id:
        return
    referee = await repository.contact(tx, program_id=program.id, member_id=member_id)
    assert referee is not None  # enrolled in this transaction
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
        tx, program_id=program.id, referrer_id=referrer.member_id, referee_id=member_id
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


def _credit(state: Any, points: int) -> tuple[list[int], list[int]]:
    """The member-side legs of crediting `points`: debt repaid first, the rest available."""
    repay = min(max(-state.debt, 0), points)
    return [state.available_id, state.debt_id], [points - repay, repay]


async def reward_after_earn(
    database: Database,
    program: Program,
    referee_id: int,
    order_id: str | None,
    earning_base: int,
    occurred_at: datetime,
) -> int | None:
    """Reward the member's pending referral if this earn (already posted) is its first
    qualifying order. Returns the id of the `referral` transaction, or None when there is
    nothing to reward: referrals off, no open referral, no order, an order below the minimum,
    or the referrer at the monthly cap for the order's local month (the referral is then marked
    `cap_reached` and a later qualifying order may still earn it). The order counts by
    `earning_base`, the amount the rules earn on, in minor units.

    Accounting: issuance -> referrer available (+referrer_points) and issuance -> referee
    available (+referee_points), one `referral` transaction (a member in debt repays it first,
    as with every credit)."""
    policy = program.referral_policy
    if policy is None or order_id is None or earning_base < policy.min_order_amount:
        return None
    async with database.single() as db:
        found = await repository.open_referral(db, program_id=program.id, referee_id=referee_id)
    if found is None:
        return None
    async with database.lock_members(program.id, [found.referrer_id, referee_id]) as locks:
        referral = await repository.open_referral(
            locks, program_id=program.id, referee_id=referee_id, lock=True
        )
        if referral is None:  # rewarded meanwhile
            return None
        start, end = _month_bounds(occurred_at, program.timezone)
        decision = check_reward(
            policy,
            order_amount=earning_base,
            already_rewarded=False,
            referrer_rewards_this_month=await repository.rewards_between(
                locks,
                program_id=program.id,
                referrer_id=referral.referrer_id,
                start=start,
                end=end,
            ),
        )
        if not decision.allowed:
            if decision.reason is ReferralReason.MONTHLY_CAP and referral.status != "cap_reached":
                await repository.mark_cap_reached(
                    locks, program_id=program.id, referral_id=referral.id
                )
            return None
        transaction_id: int | None = None
        if policy.referrer_points or policy.referee_points:
            transaction_id = await _post_reward(
                locks, program, referral, referee_id, order_id, earning_base, occurred_at
            )
        await repository.mark_rewarded(
            locks,
            program_id=program.id,
            referral_id=referral.id,
            order_id=order_id,
            order_amount=earning_base,
            order_occurred_at=occurred_at,
            transaction_id=transaction_id,
        )
        return transaction_id


async def _post_reward(
    locks: MemberLocks,
    program: Program,
    referral: repository.OpenReferral,
    referee_id: int,
    order_id: str,
    earning_base: int,
    occurred_at: datetime,
) -> int:
    policy = program.referral_policy
    assert policy is not None
    referrer_ids, referrer_amounts = _credit(
        locks.require(referral.referrer_id), policy.referrer_points
    )
    referee_ids, referee_amounts = _credit(locks.require(referee_id), policy.referee_points)
    names = await repository.external_ids(
        locks, program_id=program.id, member_ids=[referral.referrer_id, referee_id]
    )
    issuance = await _program_account(locks, program.id, "issuance")
    now = datetime.now(UTC)
    return await post(
        locks,
        Posting(
            program_id=program.id,
            kind="referral",
            member_id=referee_id,
            occurred_at=occurred_at,
            account_ids=[issuance, *referrer_ids, *referee_ids],
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
                "referee": names[referee_id],
                "referrer_points": policy.referrer_points,
                "referee_points": policy.referee_points,
                "order_amount": earning_base,
            },
            key=f"referral:{referral.id}",
            lot_expires_at=lot_expires_at(program.expiry_policy, now, program.timezone),
        ),
    )


async def _program_account(db: Session, program_id: int, kind: str) -> int:
    account: int = await db.fetchval(
        "SELECT id FROM accounts WHERE program_id = $1 AND member_id IS NULL"
        " AND asset = 'points' AND kind = $2",
        program_id,
        kind,
    )
    return account


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


async def clawback_after_refund(
    locks: MemberLocks, *, program: Program, order_id: str
) -> Clawback | None:
    """Claw back the referral bonus of `order_id` if this refund (already applied, in this
    transaction, which holds both members' locks) takes the order below the minimum inside the
    return window. Returns the clawback posted (None if nothing was taken back). A referral is
    clawed back once: its status changes in the same transaction.

    Accounting: referrer available -> issuance and referee available -> issuance, one
    `referral` transaction, reason "referral clawed back"; at most what each member has
    available: the rest is written off (cap_at_zero) or owed, in the member's `debt` account
    (allow_negative), exactly as refunds do."""
    policy = program.referral_policy
    if policy is None:
        return None
    referral = await repository.rewarded_for_order(locks, program_id=program.id, order_id=order_id)
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
    referrer = locks.require(referral.referrer_id)
    referee = locks.require(referral.referee_id)
    from_referrer = _take(referral.referrer_points, referrer.available, program.return_policy)
    from_referee = _take(referral.referee_points, referee.available, program.return_policy)
    moved = sum(t.taken + t.owed for t in (from_referrer, from_referee))
    transaction_id: int | None = None
    if moved > 0:
        names = await repository.external_ids(
            locks, program_id=program.id, member_ids=[referral.referrer_id, referral.referee_id]
        )
        transaction_id = await post(
            locks,
            Posting(
                program_id=program.id,
                kind="referral",
                member_id=referral.referee_id,
                occurred_at=referral.now,
                account_ids=[
                    referrer.available_id,
                    referrer.debt_id,
                    referee.available_id,
                    referee.debt_id,
                    await _program_account(locks, program.id, "issuance"),
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
            ),
        )
    await repository.mark_clawed_back(
        locks, program_id=program.id, referral_id=referral.id, transaction_id=transaction_id
    )
    return None if transaction_id is None else Clawback(transaction_id, referral.referee_id)


def _clawback_metadata(role: str, take: _Take) -> dict[str, Any]:
    return {
        f"{role}_points_taken_back": take.taken + take.owed,
        f"{role}_points_written_off": take.written_off,
    }


# Listing --------------------------------------------------------------------------------------

_REFERRALS = Cursor("r")


async def made_by(
    db: Session, *, program: Program, external_id: str, limit: int, cursor: str | None
) -> ReferralPage:
    """The referrals a member made, newest first (cursor-paginated)."""
    before = _REFERRALS.decode(cursor) if cursor else NEWEST
    member_id = await ledger_members.require_member_id(
        db, program_id=program.id, external_id=external_id
    )
    rows = await repository.made_by(
        db, program_id=program.id, referrer_id=member_id, before=before, limit=limit + 1
    )
    items, next_cursor = _REFERRALS.page(rows, limit)
    return ReferralPage(
        items=[Referral.model_validate(dict(row)) for row in items], next_cursor=next_cursor
    )
