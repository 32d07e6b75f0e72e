"""SQL for referrals. Every statement names its program."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from app.db import Session


@dataclass(frozen=True)
class Contact:
    """A member as the self-referral checks see it."""

    member_id: int
    email: str | None
    phone: str | None


@dataclass(frozen=True)
class OpenReferral:
    id: int
    referrer_id: int
    status: str


@dataclass(frozen=True)
class RewardedReferral:
    id: int
    referrer_id: int
    referee_id: int
    order_amount: int
    order_occurred_at: datetime
    reward_transaction_id: int | None
    referrer_points: int
    referee_points: int
    order_total: int | None
    order_refunded: int
    now: datetime


async def contact(db: Session, *, program_id: int, member_id: int) -> Contact | None:
    row = await db.fetchrow(
        "SELECT id, attributes ->> 'email' AS email, attributes ->> 'phone' AS phone"
        " FROM members WHERE program_id = $1 AND id = $2",
        program_id,
        member_id,
    )
    return None if row is None else Contact(row["id"], row["email"], row["phone"])


async def referrer_of(db: Session, *, program_id: int, referee_id: int) -> int | None:
    found: int | None = await db.fetchval(
        "SELECT referrer_id FROM referrals WHERE program_id = $1 AND referee_id = $2",
        program_id,
        referee_id,
    )
    return found


async def insert(db: Session, *, program_id: int, referrer_id: int, referee_id: int) -> bool:
    """Record a pending referral; False if the referee already has a referrer (the unique
    (program, referee) decides between concurrent enrolments)."""
    inserted = await db.fetchval(
        "INSERT INTO referrals (program_id, referrer_id, referee_id) VALUES ($1, $2, $3)"
        " ON CONFLICT (program_id, referee_id) DO NOTHING RETURNING id",
        program_id,
        referrer_id,
        referee_id,
    )
    return inserted is not None


async def open_referral(
    db: Session, *, program_id: int, referee_id: int, lock: bool = False
) -> OpenReferral | None:
    """The referee's referral still waiting for its bonus (locked with `lock`)."""
    row = await db.fetchrow(
        "SELECT id, referrer_id, status FROM referrals"
        " WHERE program_id = $1 AND referee_id = $2 AND status IN ('pending', 'cap_reached')"
        + (" FOR UPDATE" if lock else ""),
        program_id,
        referee_id,
    )
    return None if row is None else OpenReferral(row["id"], row["referrer_id"], row["status"])


async def rewards_between(
    db: Session, *, program_id: int, referrer_id: int, start: datetime, end: datetime
) -> int:
    """How many of the referrer's referrals were rewarded for orders in [start, end) --
    clawed-back ones included: a refunded order does not give the slot back."""
    count: int = await db.fetchval(
        "SELECT count(*) FROM referrals WHERE program_id = $1 AND referrer_id = $2"
        " AND status IN ('rewarded', 'clawed_back')"
        " AND order_occurred_at >= $3 AND order_occurred_at < $4",
        program_id,
        referrer_id,
        start,
        end,
    )
    return count


async def external_ids(db: Session, *, program_id: int, member_ids: list[int]) -> dict[int, str]:
    rows = await db.fetch(
        "SELECT id, external_id FROM members WHERE program_id = $1 AND id = ANY ($2::bigint[])",
        program_id,
        member_ids,
    )
    return {row["id"]: row["external_id"] for row in rows}


async def mark_rewarded(
    db: Session,
    *,
    program_id: int,
    referral_id: int,
    order_id: str,
    order_amount: int,
    order_occurred_at: datetime,
    transaction_id: int | None,
) -> None:
    await db.execute(
        "UPDATE referrals SET status = 'rewarded', order_id = $3, order_amount = $4,"
        " order_occurred_at = $5, rewarded_at = now(), reward_transaction_id = $6"
        " WHERE program_id = $1 AND id = $2",
        program_id,
        referral_id,
        order_id,
        order_amount,
        order_occurred_at,
        transaction_id,
    )


async def mark_cap_reached(db: Session, *, program_id: int, referral_id: int) -> None:
    await db.execute(
        "UPDATE referrals SET status = 'cap_reached' WHERE program_id = $1 AND id = $2",
        program_id,
        referral_id,
    )


async def rewarded_parties(db: Session, *, program_id: int, order_id: str) -> list[int]:
    """The referrer and referee of the rewarded referral whose qualifying order this is (the
    members a refund of it must lock), or nothing."""
    row = await db.fetchrow(
        "SELECT referrer_id, referee_id FROM referrals"
        " WHERE program_id = $1 AND order_id = $2 AND status = 'rewarded'",
        program_id,
        order_id,
    )
    return [] if row is None else [row["referrer_id"], row["referee_id"]]


async def rewarded_for_order(
    db: Session, *, program_id: int, order_id: str
) -> RewardedReferral | None:
    """The rewarded referral whose qualifying order this is, locked, with what the order has
    been refunded so far and what the bonus gave each member."""
    row = await db.fetchrow(
        "SELECT r.id, r.referrer_id, r.referee_id, r.order_amount, r.order_occurred_at,"
        " r.reward_transaction_id,"
        " coalesce((t.metadata ->> 'referrer_points')::bigint, 0) AS referrer_points,"
        " coalesce((t.metadata ->> 'referee_points')::bigint, 0) AS referee_points,"
        " o.amount AS order_total, o.refunded_amount AS order_refunded, now() AS now"
        " FROM referrals r"
        " JOIN orders o ON o.program_id = r.program_id AND o.order_id = r.order_id"
        " LEFT JOIN transactions t"
        "   ON t.program_id = r.program_id AND t.id = r.reward_transaction_id"
        " WHERE r.program_id = $1 AND r.order_id = $2 AND r.status = 'rewarded'"
        " FOR UPDATE OF r",
        program_id,
        order_id,
    )
    return None if row is None else RewardedReferral(**dict(row))


async def mark_clawed_back(
    db: Session, *, program_id: int, referral_id: int, transaction_id: int | None
) -> None:
    await db.execute(
        "UPDATE referrals SET status = 'clawed_back', clawback_transaction_id = $3"
        " WHERE program_id = $1 AND id = $2",
        program_id,
        referral_id,
        transaction_id,
    )


async def refresh_kept_balance(db: Session, *, program_id: int, key: str, member_id: int) -> Any:
    """Put the member's balance as of now into the answer kept under `key` (an earn's or a
    refund's, after its referral posting), so replays show it too; the new answer body."""
    return await db.fetchval(
        "UPDATE idempotency_keys SET response = jsonb_set(response, '{balance}',"
        " ledger_balance($1, $3)) WHERE program_id = $1 AND key = $2 RETURNING response",
        program_id,
        key,
        member_id,
    )


async def made_by(
    db: Session, *, program_id: int, referrer_id: int, before: int, limit: int
) -> list[Any]:
    """The referrals `referrer_id` made, newest first, with ids below `before`."""
    return await db.fetch(
        "SELECT r.id, m.external_id AS referee, r.status, r.created_at, r.order_id,"
        " r.rewarded_at, r.reward_transaction_id, r.clawback_transaction_id"
        " FROM referrals r"
        " JOIN members m ON m.program_id = r.program_id AND m.id = r.referee_id"
        " WHERE r.program_id = $1 AND r.referrer_id = $2 AND r.id < $3"
        " ORDER BY r.id DESC LIMIT $4",
        program_id,
        referrer_id,
        before,
        limit,
    )
