"""SQL of the expiry reads."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from app.db import Session


@dataclass(frozen=True)
class Maintained:
    member_id: int
    as_of: datetime
    inactive_at: datetime | None


async def maintain(db: Session, *, program_id: int, external_id: str) -> Maintained | None:
    """The member, brought up to date first when its maintenance is due (due lots expired, due
    pending points settled, expired holds released, exactly as the worker would)."""
    row = await db.fetchrow(
        "SELECT id, due_at <= now() AS due FROM members WHERE program_id = $1 AND external_id = $2",
        program_id,
        external_id,
    )
    if row is None:
        return None
    if row["due"]:
        await db.execute(
            "SELECT count(*) FROM ledger_lock_members($1, ARRAY[$2::bigint])",
            program_id,
            row["id"],
        )
    state = await db.fetchrow(
        "SELECT now() AS as_of, inactive_at FROM members WHERE program_id = $1 AND id = $2",
        program_id,
        row["id"],
    )
    assert state is not None
    return Maintained(row["id"], state["as_of"], state["inactive_at"])


async def expiring(
    db: Session,
    *,
    program_id: int,
    member_id: int,
    inactive_at: datetime | None,
    until: datetime,
) -> list[tuple[datetime, int]]:
    """The member's open lots lapsing by `until`, grouped by when: each lot at its own
    expires_at or, under the inactivity policy, at the member's deadline, whichever is first
    (least() ignores NULLs)."""
    rows = await db.fetch(
        "SELECT least(l.expires_at, $3) AS at, sum(l.remaining)::bigint AS points FROM lots l"
        " WHERE l.program_id = $1 AND l.member_id = $2 AND l.remaining > 0"
        "   AND least(l.expires_at, $3) <= $4"
        " GROUP BY 1 ORDER BY 1",
        program_id,
        member_id,
        inactive_at,
        until,
    )
    return [(row["at"], row["points"]) for row in rows]


def horizon(as_of: datetime, days: int) -> datetime:
    return as_of + timedelta(days=days)
