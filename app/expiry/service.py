"""What of a member's points expires when."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncConnection

from app import errors
from app.expiry import repository
from app.expiry.schemas import ExpiringPoints, MemberExpiring
from app.programs.models import Program


async def expiring(
    conn: AsyncConnection, *, program: Program, external_id: str, days: int
) -> MemberExpiring:
    """The member's points that lapse within `days` days, grouped by the instant they lapse.

    Runs the member's lazy maintenance first (in its own committed transaction), so points
    already due are expired -- and gone from the list -- rather than shown as about to lapse."""
    maintained = await repository.maintain(
        conn, program_id=program.id, external_id=external_id, days=days
    )
    if maintained is None:
        raise errors.MemberNotFound(f"no member {external_id!r} in this program")
    found = await repository.expiring(
        conn, program_id=program.id, member_id=maintained.member_id, until=maintained.until
    )
    groups = [ExpiringPoints(expires_at=at, points=points) for at, points in found.groups]
    return MemberExpiring(
        member=external_id,
        policy=found.policy,
        as_of=maintained.as_of,
        until=maintained.until,
        total=sum(group.points for group in groups),
        expiring=groups,
        inactivity_deadline=found.inactivity_deadline,
    )
