"""SQL for tiers: a member's stored tier status, qualifying days and memberships.

The qualifying days come from `member_days`, the projection the posting functions keep (one
row per member and local day): reading a member's credit costs one row per active day,
whatever the number of earns. `verify` checks that projection against the ledger.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from app.db import Session
from app.domain.tiers import TierStatus
from app.tiers.projection import LATE_MARGIN, EventDay, MembershipTerm, StoredTier

_STATE = """
    SELECT m.created_at, t.status, t.evaluated_on, t.updated_at - $3::interval AS watermark,
           (SELECT coalesce(json_agg(json_build_array(s.tier, s.starts_on, s.ends_on)
                                     ORDER BY s.id), '[]')
              FROM memberships s WHERE s.program_id = m.program_id AND s.member_id = m.id)
               AS terms,
           (SELECT coalesce(json_agg(json_build_array(
                       d.day, d.qualifying, d.qualifying_changed_at >= t.updated_at - $3::interval,
                       d.qualifying_taken_back_at >= t.updated_at - $3::interval) ORDER BY d.day),
                    '[]')
              FROM member_days d
             WHERE d.program_id = m.program_id AND d.member_id = m.id
               AND d.qualifying_changed_at IS NOT NULL) AS days
      FROM members m
      LEFT JOIN member_tiers t ON t.program_id = m.program_id AND t.member_id = m.id
     WHERE m.program_id = $1 AND m.id = $2
"""


def stored_from(row: Any) -> StoredTier:
    """The stored tier of a row with created_at, status, evaluated_on, watermark and terms."""
    terms = tuple(
        MembershipTerm(tier, date.fromisoformat(starts_on), date.fromisoformat(ends_on))
        for tier, starts_on, ends_on in row["terms"]
    )
    return StoredTier(
        row["created_at"], row["status"], row["evaluated_on"], row["watermark"], terms
    )


def days_from(raw: list[Any]) -> list[EventDay]:
    """Event days of `[day, amount, late, late_negative]` rows (JSON)."""
    return [
        EventDay(date.fromisoformat(day), int(amount), bool(late), bool(late_negative))
        for day, amount, late, late_negative in raw
    ]


async def state(db: Session, program_id: int, member_id: int) -> tuple[StoredTier, list[EventDay]]:
    """The member's stored tier and qualifying days, in one round trip."""
    row = await db.fetchrow(_STATE, program_id, member_id, LATE_MARGIN)
    assert row is not None  # the caller found the member
    return stored_from(row), days_from(row["days"])


async def save_status(
    db: Session, program_id: int, member_id: int, status: TierStatus, evaluated_on: date
) -> None:
    await db.execute(
        "INSERT INTO member_tiers (program_id, member_id, tier, status, evaluated_on)"
        " VALUES ($1, $2, $3, $4, $5)"
        " ON CONFLICT (program_id, member_id) DO UPDATE"
        " SET tier = excluded.tier, status = excluded.status,"
        " evaluated_on = excluded.evaluated_on, updated_at = now()",
        program_id,
        member_id,
        status.tier,
        status.model_dump(mode="json"),
        evaluated_on,
    )


async def memberships(
    db: Session, program_id: int, member_id: int, *, after: int = 0, limit: int = 10_000
) -> list[Any]:
    """The member's memberships (rows: id, member, tier, starts_on, ends_on, payment_ref,
    created_at), oldest first."""
    return await db.fetch(
        "SELECT s.id, m.external_id AS member, s.tier, s.starts_on, s.ends_on, s.payment_ref,"
        " s.created_at FROM memberships s"
        " JOIN members m ON m.program_id = s.program_id AND m.id = s.member_id"
        " WHERE s.program_id = $1 AND s.member_id = $2 AND s.id > $3"
        " ORDER BY s.id LIMIT $4",
        program_id,
        member_id,
        after,
        limit,
    )


async def insert_membership(
    db: Session,
    *,
    program_id: int,
    member_id: int,
    tier: str,
    starts_on: date,
    ends_on: date,
    payment_ref: str | None,
) -> int:
    """A paid membership; the member's rules context changes (its tier), so its version too."""
    new_id: int = await db.fetchval(
        "WITH bumped AS (UPDATE members SET version = version + 1"
        "                 WHERE program_id = $1 AND id = $2)"
        " INSERT INTO memberships (program_id, member_id, tier, starts_on, ends_on, payment_ref)"
        " VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
        program_id,
        member_id,
        tier,
        starts_on,
        ends_on,
        payment_ref,
    )
    return new_id


def watermark_of(updated_at: datetime | None) -> datetime | None:
    return None if updated_at is None else updated_at - LATE_MARGIN
