"""Members by their external ids: the program's own ids for them (shops, tills and apps know
members only by external id; the ledger by `members.id`)."""

from __future__ import annotations

from app import errors
from app.db import Session


async def member_id(db: Session, *, program_id: int, external_id: str) -> int | None:
    found: int | None = await db.fetchval(
        "SELECT id FROM members WHERE program_id = $1 AND external_id = $2",
        program_id,
        external_id,
    )
    return found


async def require_member_id(db: Session, *, program_id: int, external_id: str) -> int:
    """`member_id`, or 404 member_not_found."""
    found = await member_id(db, program_id=program_id, external_id=external_id)
    if found is None:
        raise errors.MemberNotFound.named(external_id)
    return found
