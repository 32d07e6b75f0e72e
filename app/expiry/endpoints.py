"""HTTP endpoints for expiry."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query
from sqlalchemy.ext.asyncio import AsyncConnection

from app import errors
from app.db import get_autocommit_connection
from app.expiry import service
from app.expiry.schemas import MemberExpiring, parse_within
from app.programs.auth import CanRead
from app.schemas import ExternalId

router = APIRouter(prefix="/v1/members", tags=["members"])


@router.get(
    "/{external_id}/expiring",
    response_model=MemberExpiring,
    summary="What of a member's points expires when",
    description=(
        "The member's available points that lapse within `within` (e.g. `30d`), grouped by "
        "the instant they lapse, soonest first, with their total. Points already due are "
        "expired first (the member's `expire` transactions appear in its history)."
    ),
    responses=errors.error_responses(errors.MemberNotFound),
)
async def member_expiring(
    external_id: Annotated[ExternalId, Path(description="The member's external id")],
    caller: CanRead,
    conn: Annotated[AsyncConnection, Depends(get_autocommit_connection)],
    within: Annotated[
        str,
        Query(
            max_length=16,
            description="Horizon in days: `Nd`, from `0d` to `3650d`.",
            examples=["30d"],
        ),
    ] = "30d",
) -> MemberExpiring:
    days = parse_within(within)
    return await service.expiring(conn, program=caller.program, external_id=external_id, days=days)
