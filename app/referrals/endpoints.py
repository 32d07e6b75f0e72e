"""HTTP endpoints for referrals."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query

from app import errors
from app.api.deps import Db
from app.api.problems import error_responses
from app.programs.access import CanRead
from app.referrals import service
from app.referrals.schemas import ReferralPage
from app.schemas import ExternalId

router = APIRouter(prefix="/v1", tags=["members"])


@router.get(
    "/members/{external_id}/referrals",
    response_model=ReferralPage,
    summary="The members this member referred, newest first",
    description=(
        "Each referral made with this member's `referral_code`, with its status: `pending` "
        "(no qualifying order yet), `cap_reached` (a qualifying order came while this member "
        "was at the monthly cap), `rewarded` or `clawed_back`."
    ),
    responses=error_responses(errors.MemberNotFound, errors.InvalidCursor),
)
async def member_referrals(
    external_id: Annotated[ExternalId, Path(description="The referrer's external id")],
    caller: CanRead,
    database: Db,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=64)] = None,
) -> ReferralPage:
    async with database.single() as db:
        return await service.made_by(
            db, program=caller.program, external_id=external_id, limit=limit, cursor=cursor
        )
