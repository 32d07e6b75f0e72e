"""SQL for tiers: a member's qualifying events, memberships and stored tier status."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import orjson
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from app.rules.tiers import TierStatus

# A stored status is taken to include the events recorded up to this long before it was
# written (see `app.tiers.projection.must_restart` for the events recorded later). The margin
# covers postings that began before the evaluation but committed after it (a posting is one
# short statement).
LATE_MARGIN = "5 minutes"

_LOCK = text("SELECT lock_members(ARRAY[CAST(:member_id AS bigint)])")
# The stored status and the member's membership terms, in one round trip (an earn evaluates
# the tier under the member's lock, so every statement there is paid for by the next earn).
_STATE = text(
    f"""
    SELECT m.created_at, t.status, t.evaluated_on,
           t.updated_at - interval '{LATE_MARGIN}' AS watermark,
           (SELECT coalesce(json_agg(json_build_array(s.tier, s.starts_on, s.ends_on)
                                     ORDER BY s.id), '[]')
              FROM memberships s WHERE s.member_id = m.id) AS terms
      FROM members m LEFT JOIN member_tiers t ON t.member_id = m.id
     WHERE m.id = :member_id
    """
)
_EVENTS_SINCE = text(
    """
    SELECT (t.occurred_at AT TIME ZONE :tz)::date AS day, sum(e.amount)::bigint AS amount,
           coalesce(bool_or(t.recorded_at >= CAST(:watermark AS timestamptz)), false) AS late,
           coalesce(bool_or(t.recorded_at >= CAST(:watermark AS timestamptz)
                            AND e.amount < 0), false) AS late_negative
      FROM entries e JOIN transactions t ON t.id = e.transaction_id
     WHERE e.member_id = :member_id AND e.asset = 'qualifying' AND t.occurred_at >= :start
     GROUP BY 1 ORDER BY 1
    """
)
_EVENTS_ALL = text(
    """
    SELECT (t.occurred_at AT TIME ZONE :tz)::date AS day, sum(e.amount)::bigint AS amount,
           false AS late, false AS late_negative
      FROM entries e JOIN transactions t ON t.id = e.transaction_id
     WHERE e.member_id = :member_id AND e.asset = 'qualifying'
     GROUP BY 1 ORDER BY 1
    """
)
_MEMBERSHIPS = text(
    """
    SELECT s.id, m.external_id AS member, s.tier, s.starts_on, s.ends_on, s.payment_ref,
           s.created_at
      FROM memberships s JOIN members m ON m.id = s.member_id
     WHERE s.member_id = :member_id AND s.id > :after
     ORDER BY s.id LIMIT :limit
    """
)
_SAVE = text(
    """
    INSERT INTO member_tiers (member_id, program_id, tier, status, evaluated_on)
    VALUES (:member_id, :program_id, :tier, CAST(:status AS jsonb), :evaluated_on)
    ON CONFLICT (member_id) DO UPDATE
       SET tier = excluded.tier, status = excluded.status, evaluated_on = excluded.evaluated_on,
           updated_at = now()
    """
)
_INSERT_MEMBERSHIP = text(
    """
    INSERT INTO memberships (program_id, member_id, tier, starts_on, ends_on, payment_ref)
    VALUES (:program_id, :member_id, :tier, :starts_on, :ends_on, :payment_ref)
    RETURNING id
    """
)


@dataclass(frozen=True)
class MembershipTerm:
    """A paid membership's tier and days (inclusive), as the tier rules need it."""

    tier: str
    starts_on: date
    ends_on: date


@dataclass(frozen=True)
class StoredTier:
    """What is stored about a member's tier: enrolment time, the last evaluated status (None
    when never evaluated; `status` is the raw JSON, validated by the caller), and the member's
    membership terms, oldest first."""

    created_at: datetime
    status: Any
    evaluated_on: date | None
    watermark: datetime | None
    terms: list[MembershipTerm]


@dataclass(frozen=True)
class EventDay:
    """A member's net qualifying credit on a local day; `late`: some of it was recorded after
    the stored status was written (`late_negative`: some of that was a take-back)."""

    day: date
    amount: int
    late: bool = False
    late_negative: bool = False


async def lock_member(conn: AsyncConnection, member_id: int) -> None:
    """The member's advisory lock (the one every member-scoped posting takes), until commit."""
    await conn.execute(_LOCK, {"member_id": member_id})


async def stored_tier(conn: AsyncConnection, member_id: int) -> StoredTier:
    row = (await conn.execute(_STATE, {"member_id": member_id})).one()
    terms = [
        MembershipTerm(tier, date.fromisoformat(starts_on), date.fromisoformat(ends_on))
        for tier, starts_on, ends_on in row.terms
    ]
    return StoredTier(row.created_at, row.status, row.evaluated_on, row.watermark, terms)


async def event_days(
    conn: AsyncConnection,
    member_id: int,
    timezone: str,
    start: datetime | None,
    watermark: datetime | None,
) -> list[EventDay]:
    """The member's qualifying credit (member side, signed) by local date of `occurred_at`:
    all of it (`start` None) or from the instant `start` on."""
    if start is None:
        rows = await conn.execute(_EVENTS_ALL, {"member_id": member_id, "tz": timezone})
    else:
        rows = await conn.execute(
            _EVENTS_SINCE,
            {"member_id": member_id, "tz": timezone, "start": start, "watermark": watermark},
        )
    return [EventDay(r.day, int(r.amount), r.late, r.late_negative) for r in rows]


async def memberships(
    conn: AsyncConnection, member_id: int, *, after: int = 0, limit: int = 10_000
) -> list[Any]:
    """The member's memberships (rows: id, member, tier, starts_on, ends_on, payment_ref,
    created_at), oldest first."""
    rows = await conn.execute(
        _MEMBERSHIPS, {"member_id": member_id, "after": after, "limit": limit}
    )
    return list(rows)


async def save_status(
    conn: AsyncConnection, program_id: int, member_id: int, status: TierStatus, evaluated_on: date
) -> None:
    await conn.execute(
        _SAVE,
        {
            "member_id": member_id,
            "program_id": program_id,
            "tier": status.tier,
            "status": orjson.dumps(status.model_dump(mode="json")).decode(),
            "evaluated_on": evaluated_on,
        },
    )


async def insert_membership(
    conn: AsyncConnection,
    *,
    program_id: int,
    member_id: int,
    tier: str,
    starts_on: date,
    ends_on: date,
    payment_ref: str | None,
) -> int:
    new_id: int = await conn.scalar(
        _INSERT_MEMBERSHIP,
        {
            "program_id": program_id,
            "member_id": member_id,
            "tier": tier,
            "starts_on": starts_on,
            "ends_on": ends_on,
            "payment_ref": payment_ref,
        },
    )
    return new_id
