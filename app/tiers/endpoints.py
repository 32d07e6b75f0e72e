"""HTTP endpoints for tier status and paid memberships."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query
from starlette.responses import Response

from app import errors
from app.api.answers import render
from app.api.deps import Db, IdempotencyKey
from app.api.problems import error_responses
from app.programs.access import CanRead, IsAdmin
from app.schemas import ExternalId
from app.tiers import service
from app.tiers.schemas import GrantMembership, MembershipGranted, MembershipPage, MemberTier

router = APIRouter(prefix="/v1/members", tags=["tiers"])

MemberPath = Annotated[ExternalId, Path(description="The member's external id")]


@router.get(
    "/{external_id}/tier",
    response_model=MemberTier,
    summary="A member's tier status and progress",
    description=(
        "The tier held today (in the program's time zone), since when, until when it is "
        "guaranteed, the progress to the next tier and what it takes to keep the earned tier. "
        "Tier status is a projection of the member's qualifying credit and paid memberships, "
        "evaluated on read (and on every earn). `409 tiers_not_configured` when the program "
        "has no tiers."
    ),
    responses=error_responses(errors.MemberNotFound, errors.TiersNotConfigured),
)
async def get_tier(external_id: MemberPath, caller: CanRead, database: Db) -> MemberTier:
    service.require_tiers(caller.program)
    async with database.lock_members(caller.program.id, external_ids=[external_id]) as locks:
        return await service.get_tier(locks, program=caller.program, external_id=external_id)


@router.post(
    "/{external_id}/memberships",
    status_code=201,
    response_model=MembershipGranted,
    summary="Grant a paid membership",
    description=(
        "Grants `tier` from `starts_at` through `ends_at` regardless of qualification (a paid "
        "VIP programme). The member holds the higher of the earned tier and the membership's; "
        "when the term ends, the member falls back to the earned tier. Answers the membership "
        "and the member's tier status with it."
    ),
    responses=error_responses(
        errors.IdempotencyKeyMissing,
        errors.IdempotencyConflict,
        errors.MemberNotFound,
        errors.TiersNotConfigured,
        errors.UnknownTier,
        errors.MembershipTermInvalid,
        body=True,
    ),
)
async def grant_membership(
    external_id: MemberPath,
    body: GrantMembership,
    caller: IsAdmin,
    key: IdempotencyKey,
    database: Db,
) -> Response:
    async with database.lock_members(caller.program.id, external_ids=[external_id]) as locks:
        answer = await service.grant_membership(
            locks, program=caller.program, key=key, external_id=external_id, request=body
        )
    return render(answer, caller.program)


@router.get(
    "/{external_id}/memberships",
    response_model=MembershipPage,
    summary="A member's paid memberships, oldest first",
    responses=error_responses(errors.MemberNotFound, errors.InvalidCursor),
)
async def list_memberships(
    external_id: MemberPath,
    caller: CanRead,
    database: Db,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=64)] = None,
) -> MembershipPage:
    async with database.single() as db:
        return await service.list_memberships(
            db, program=caller.program, external_id=external_id, limit=limit, cursor=cursor
        )
