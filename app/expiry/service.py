"""What of a member's points expires when."""

from __future__ import annotations

from app import errors
from app.db import Session
from app.expiry import repository
from app.expiry.schemas import ExpiringPoints, MemberExpiring
from app.programs.models import Program


async def expiring(db: Session, *, program: Program, external_id: str, days: int) -> MemberExpiring:
    """The member's points that lapse within `days` days, grouped by the instant they lapse.

    Runs the member's lazy maintenance first when it is due, so points already due are expired
    -- and gone from the list -- rather than shown as about to lapse."""
    maintained = await repository.maintain(db, program_id=program.id, external_id=external_id)
    if maintained is None:
        raise errors.MemberNotFound.named(external_id)
    until = repository.horizon(maintained.as_of, days)
    found = await repository.expiring(
        db,
        program_id=program.id,
        member_id=maintained.member_id,
        inactive_at=maintained.inactive_at,
        until=until,
    )
    groups = [ExpiringPoints(expires_at=at, points=points) for at, points in found]
    return MemberExpiring(
        member=external_id,
        policy=program.expiry_policy.kind,
        as_of=maintained.as_of,
        until=until,
        total=sum(group.points for group in groups),
        expiring=groups,
        inactivity_deadline=maintained.inactive_at,
    )
