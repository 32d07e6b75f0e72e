"""SQL for referrals.

Every function runs on the caller's connection (or session), inside the caller's database
transaction: the enrolment's, the earn's or the refund's.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

Db = AsyncConnection | AsyncSession


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


@dataclass(frozen=True)
class MemberPoints:
    available_account: int
    debt_account: int
    available: int


_CONTACT = (
    "SELECT id, attributes ->> 'email' AS email, attributes ->> 'phone' AS phone FROM members"
)


async def member_by_code(db: Db, *, program_id: int, code: str) -> Contact | None:
    row = (
        await db.execute(
            text(_CONTACT + " WHERE program_id = :program_id AND referral_code = :code"),
            {"program_id": program_id, "code": code},
        )
    ).one_or_none()
    return None if row is None else Contact(row.id, row.email, row.phone)


async def contact(db: Db, *, member_id: int) -> Contact:
    row = (await db.execute(text(_CONTACT + " WHERE id = :id"), {"id": member_id})).one()
    return Contact(row.id, row.email, row.phone)


async def referrer_of(db: Db, *, referee_id: int) -> int | None:
    found: int | None = await db.scalar(
        text("SELECT referrer_id FROM referrals WHERE referee_id = :referee_id"),
        {"referee_id": referee_id},
    )
    return found


async def insert(db: Db, *, program_id: int, referrer_id: int, referee_id: int) -> bool:
    """Record a pending referral; False if the referee already has a referrer (the unique
    `referee_id` decides between concurrent enrolments)."""
    inserted = await db.scalar(
        text(
            "INSERT INTO referrals (program_id, referrer_id, referee_id)"
            " VALUES (:program_id, :referrer_id, :referee_id)"
            " ON CONFLICT (referee_id) DO NOTHING RETURNING id"
        ),
        {"program_id": program_id, "referrer_id": referrer_id, "referee_id": referee_id},
    )
    return inserted is not None


async def open_referral(db: Db, *, referee_id: int) -> OpenReferral | None:
    """The referee's referral still waiting for its bonus, locked; None if there is none."""
    row = (
        await db.execute(
            text(
                "SELECT id, referrer_id, status FROM referrals WHERE referee_id = :referee_id"
                " AND status IN ('pending', 'cap_reached') FOR UPDATE"
            ),
            {"referee_id": referee_id},
        )
    ).one_or_none()
    return None if row is None else OpenReferral(row.id, row.referrer_id, row.status)


async def lock_accounts(db: Db, *, program_id: int, member_ids: list[int]) -> None:
    """Row-lock the members' points accounts (ascending account id, as ledger_post does)."""
    await db.execute(
        text("SELECT lock_member_accounts(:program_id, CAST(:member_ids AS bigint[]))"),
        {"program_id": program_id, "member_ids": member_ids},
    )


async def rewards_between(db: Db, *, referrer_id: int, start: datetime, end: datetime) -> int:
    """How many of the referrer's referrals were rewarded for orders in [start, end) --
    clawed-back ones included: a refunded order does not give the slot back."""
    count: int = await db.scalar(
        text(
            "SELECT count(*) FROM referrals WHERE referrer_id = :referrer_id"
            " AND status IN ('rewarded', 'clawed_back')"
            " AND order_occurred_at >= :start AND order_occurred_at < :end"
        ),
        {"referrer_id": referrer_id, "start": start, "end": end},
    )
    return count


async def credit_legs(
    db: Db, *, program_id: int, member_id: int, points: int
) -> tuple[list[int], list[int]]:
    """The member-side legs of a credit: the member's debt is repaid first, the rest goes to
    available (SQL `member_credit_legs`)."""
    row = (
        await db.execute(
            text(
                "SELECT o_account_ids, o_amounts"
                " FROM member_credit_legs(:program_id, :member_id, :points)"
            ),
            {"program_id": program_id, "member_id": member_id, "points": points},
        )
    ).one()
    return list(row.o_account_ids), list(row.o_amounts)


async def member_points(db: Db, *, program_id: int, member_id: int) -> MemberPoints:
    row = (
        await db.execute(
            text(
                "SELECT a.o_available, a.o_debt, b.balance"
                " FROM member_account_ids(:program_id, :member_id) a"
                " JOIN accounts b ON b.id = a.o_available"
            ),
            {"program_id": program_id, "member_id": member_id},
        )
    ).one()
    return MemberPoints(row.o_available, row.o_debt, row.balance)


async def post(
    db: Db,
    *,
    program_id: int,
    member_id: int,
    occurred_at: datetime,
    account_ids: list[int],
    amounts: list[int],
    order_id: str | None,
    reason: str,
    metadata: dict[str, Any],
    key: str,
) -> int:
    """One `referral` ledger transaction (SQL `ledger_post`)."""
    transaction_id: int = await db.scalar(
        text(
            "SELECT ledger_post(:program_id, 'referral', :member_id, :occurred_at,"
            " CAST(:account_ids AS bigint[]), CAST(:amounts AS bigint[]), :order_id, :reason,"
            " CAST(:metadata AS jsonb), NULL, :key)"
        ),
        {
            "program_id": program_id,
            "member_id": member_id,
            "occurred_at": occurred_at,
            "account_ids": account_ids,
            "amounts": amounts,
            "order_id": order_id,
            "reason": reason,
            "metadata": orjson.dumps(metadata).decode(),
            "key": key,
        },
    )
    return transaction_id


async def mark_rewarded(
    db: Db,
    *,
    referral_id: int,
    order_id: str,
    order_amount: int,
    order_occurred_at: datetime,
    transaction_id: int | None,
) -> None:
    await db.execute(
        text(
            "UPDATE referrals SET status = 'rewarded', order_id = :order_id,"
            " order_amount = :order_amount, order_occurred_at = :order_occurred_at,"
            " rewarded_at = now(), reward_transaction_id = :transaction_id WHERE id = :id"
        ),
        {
            "id": referral_id,
            "order_id": order_id,
            "order_amount": order_amount,
            "order_occurred_at": order_occurred_at,
            "transaction_id": transaction_id,
        },
    )


async def mark_cap_reached(db: Db, *, referral_id: int) -> None:
    await db.execute(
        text("UPDATE referrals SET status = 'cap_reached' WHERE id = :id"), {"id": referral_id}
    )


async def rewarded_for_order(db: Db, *, program_id: int, order_id: str) -> RewardedReferral | None:
    """The rewarded referral whose qualifying order this is, locked, with what the order has
    been refunded so far and what the bonus gave each member."""
    row = (
        await db.execute(
            text(
                "SELECT r.id, r.referrer_id, r.referee_id, r.order_amount, r.order_occurred_at,"
                " r.reward_transaction_id,"
                " coalesce((t.metadata ->> 'referrer_points')::bigint, 0) AS referrer_points,"
                " coalesce((t.metadata ->> 'referee_points')::bigint, 0) AS referee_points,"
                " o.amount AS order_total, o.refunded_amount AS order_refunded, now() AS now"
                " FROM referrals r"
                " JOIN orders o ON o.program_id = r.program_id AND o.order_id = r.order_id"
                " LEFT JOIN transactions t ON t.id = r.reward_transaction_id"
                " WHERE r.program_id = :program_id AND r.order_id = :order_id"
                " AND r.status = 'rewarded' FOR UPDATE OF r"
            ),
            {"program_id": program_id, "order_id": order_id},
        )
    ).one_or_none()
    if row is None:
        return None
    return RewardedReferral(
        id=row.id,
        referrer_id=row.referrer_id,
        referee_id=row.referee_id,
        order_amount=row.order_amount,
        order_occurred_at=row.order_occurred_at,
        reward_transaction_id=row.reward_transaction_id,
        referrer_points=row.referrer_points,
        referee_points=row.referee_points,
        order_total=row.order_total,
        order_refunded=row.order_refunded,
        now=row.now,
    )


async def mark_clawed_back(db: Db, *, referral_id: int, transaction_id: int | None) -> None:
    await db.execute(
        text(
            "UPDATE referrals SET status = 'clawed_back', clawback_transaction_id = :transaction_id"
            " WHERE id = :id"
        ),
        {"id": referral_id, "transaction_id": transaction_id},
    )


async def refresh_stored_balance(db: Db, *, program_id: int, key: str, member_id: int) -> str:
    """Put the member's balance as of now into a stored idempotent response (the refund's, after
    its clawback); the updated response as JSON text."""
    body: str = await db.scalar(
        text(
            "UPDATE idempotency_keys SET response = jsonb_set(response, '{balance}',"
            " member_points_balance(:program_id, :member_id))"
            " WHERE program_id = :program_id AND key = :key RETURNING response::text"
        ),
        {"program_id": program_id, "key": key, "member_id": member_id},
    )
    return body


async def made_by(db: Db, *, referrer_id: int, before: int, limit: int) -> list[Any]:
    """The referrals `referrer_id` made, newest first, with ids below `before`."""
    rows = await db.execute(
        text(
            "SELECT r.id, m.external_id AS referee, r.status, r.created_at, r.order_id,"
            " r.rewarded_at, r.reward_transaction_id, r.clawback_transaction_id"
            " FROM referrals r JOIN members m ON m.id = r.referee_id"
            " WHERE r.referrer_id = :referrer_id AND r.id < :before"
            " ORDER BY r.id DESC LIMIT :limit"
        ),
        {"referrer_id": referrer_id, "before": before, "limit": limit},
    )
    return list(rows)
