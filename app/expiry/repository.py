"""SQL of the expiry reads."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection


@dataclass(frozen=True)
class Maintained:
    member_id: int
    as_of: datetime
    until: datetime


# Lazy maintenance first (its own transaction in autocommit): due lots are expired, due pending
# points settled and expired holds released, exactly as the worker would.
_MAINTAIN = text(
    """
    SELECT m.id, member_maintain(m.program_id, m.id) AS done,
           now() AS as_of, now() + make_interval(days => :days) AS until
      FROM members m
     WHERE m.program_id = :program_id AND m.external_id = :external_id
    """
)

# Each open lot lapses at its own expires_at or, under the inactivity policy, at the member's
# deadline, whichever is first (least() ignores NULLs).
_EXPIRING = text(
    """
    WITH deadline AS (SELECT member_inactivity_deadline(:program_id, :member_id) AS at),
    due AS (
        SELECT least(l.expires_at, d.at) AS expires_at, sum(l.remaining)::bigint AS points
          FROM lots l CROSS JOIN deadline d
         WHERE l.member_id = :member_id AND l.program_id = :program_id AND l.remaining > 0
           AND least(l.expires_at, d.at) <= :until
         GROUP BY 1)
    SELECT (SELECT expiry_policy ->> 'kind' FROM programs WHERE id = :program_id) AS policy,
           (SELECT at FROM deadline) AS deadline,
           coalesce((SELECT array_agg(expires_at ORDER BY expires_at) FROM due), '{}') AS at,
           coalesce((SELECT array_agg(points ORDER BY expires_at) FROM due), '{}') AS points
    """
)


async def maintain(
    conn: AsyncConnection, *, program_id: int, external_id: str, days: int
) -> Maintained | None:
    row = (
        await conn.execute(
            _MAINTAIN, {"program_id": program_id, "external_id": external_id, "days": days}
        )
    ).first()
    if row is None:
        return None
    return Maintained(member_id=row.id, as_of=row.as_of, until=row.until)


@dataclass(frozen=True)
class Expiring:
    policy: str
    inactivity_deadline: datetime | None
    groups: list[tuple[datetime, int]]


async def expiring(
    conn: AsyncConnection, *, program_id: int, member_id: int, until: datetime
) -> Expiring:
    row = (
        await conn.execute(
            _EXPIRING, {"program_id": program_id, "member_id": member_id, "until": until}
        )
    ).one()
    return Expiring(
        policy=row.policy,
        inactivity_deadline=row.deadline,
        groups=list(zip(row.at, row.points, strict=True)),
    )
