"""SQL for members."""

from __future__ import annotations

from datetime import date
from typing import Any

from app.db import Session


async def enroll(
    db: Session,
    *,
    program_id: int,
    external_id: str,
    birthday: date | None,
    attributes: dict[str, Any] | None,
) -> tuple[int, bool]:
    """Enrol the member, or update an enrolled one with what is given (PATCH semantics: a
    birthday replaces the old one, attributes are merged key by key); its id, and True if it
    was created by this call. A change of what the earning rules read (the birthday) bumps the
    member's version, so a member-dependent earn computed before it is evaluated again."""
    row = await db.fetchrow(
        "INSERT INTO members AS m (program_id, external_id, birthday, attributes, version)"
        " VALUES ($1, $2, $3, $4, 1)"
        " ON CONFLICT (program_id, external_id) DO UPDATE"
        " SET birthday = coalesce(excluded.birthday, m.birthday),"
        "     attributes = m.attributes || excluded.attributes,"
        "     version = m.version + CASE WHEN excluded.birthday IS DISTINCT FROM m.birthday"
        "                                 AND excluded.birthday IS NOT NULL THEN 1 ELSE 0 END"
        " RETURNING m.id, (m.xmax = 0) AS created",
        program_id,
        external_id,
        birthday,
        attributes or {},
    )
    assert row is not None
    return row["id"], row["created"]


async def view(db: Session, *, program_id: int, external_id: str) -> dict[str, Any] | None:
    """The member as the API shows it (in points), after its due maintenance; None if the
    program has no such member."""
    found: dict[str, Any] | None = await db.fetchval(
        "SELECT members_view($1, $2)", program_id, external_id
    )
    return found
