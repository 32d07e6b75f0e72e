"""SQL for members."""

from __future__ import annotations

from datetime import date
from typing import Any

import orjson
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from app import errors
from app.members.schemas import Balance, Member, PendingLot

_MEMBER_VIEW = text(
    "SELECT m.id, m.external_id, m.birthday, m.attributes, m.created_at, m.referral_code,"
    " member_points_balance(m.program_id, m.id)::text AS balance"
    " FROM members m WHERE m.program_id = :program_id AND m.external_id = :external_id"
)


async def enroll(
    session: AsyncSession,
    *,
    program_id: int,
    external_id: str,
    birthday: date | None,
    attributes: dict[str, Any] | None,
) -> tuple[int, bool]:
    """Enrol the member if new: its id, and True if it was created by this call."""
    row = (
        await session.execute(
            text(
                "SELECT o_member_id, o_created FROM member_enroll(:program_id, :external_id,"
                " :birthday, CAST(:attributes AS jsonb))"
            ),
            {
                "program_id": program_id,
                "external_id": external_id,
                "birthday": birthday,
                "attributes": orjson.dumps(attributes or {}).decode(),
            },
        )
    ).one()
    return row.o_member_id, row.o_created


async def find(
    conn: AsyncConnection | AsyncSession, *, program_id: int, external_id: str
) -> Member | None:
    row = (
        await conn.execute(_MEMBER_VIEW, {"program_id": program_id, "external_id": external_id})
    ).one_or_none()
    if row is None:
        return None
    lots = await conn.execute(
        text(
            "SELECT remaining AS points, release_at AS available_at, order_id FROM pending_lots"
            " WHERE member_id = :member_id AND remaining > 0 ORDER BY release_at, id"
        ),
        {"member_id": row.id},
    )
    return Member(
        external_id=row.external_id,
        birthday=row.birthday,
        attributes=row.attributes,
        created_at=row.created_at,
        referral_code=row.referral_code,
        balance=Balance.model_validate_json(row.balance),
        pending_lots=[PendingLot.model_validate(lot, from_attributes=True) for lot in lots],
    )


async def member_id(
    conn: AsyncConnection | AsyncSession, *, program_id: int, external_id: str
) -> int | None:
    found: int | None = await conn.scalar(
        text(
            "SELECT id FROM members WHERE program_id = :program_id AND external_id = :external_id"
        ),
        {"program_id": program_id, "external_id": external_id},
    )
    return found


async def require_member_id(
    conn: AsyncConnection | AsyncSession, *, program_id: int, external_id: str
) -> int:
    """`member_id`, or 404 member_not_found."""
    found = await member_id(conn, program_id=program_id, external_id=external_id)
    if found is None:
        raise errors.MemberNotFound(f"no member {external_id!r} in this program")
    return found
