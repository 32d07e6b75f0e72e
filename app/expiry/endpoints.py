"""HTTP endpoints for expiry."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query

from app import errors
from app.api.deps import Db
from app.api.problems import error_responses
from app.expiry import service
from app.expiry.schemas import MemberExpiring, parse_within
from app.programs.access import CanRead
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
    responses=error_responses(errors.MemberNotFound),
)
async def member_expiring(
    external_id: Annotated[ExternalId, Path(description="The member's external id")],
    caller: CanRead,
    database: Db,
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
    async with database.single() as db:
        return await service.expiring(
            db, program=caller.program, external_id=external_id, days=days
        )
