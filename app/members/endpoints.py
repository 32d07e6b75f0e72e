"""HTTP endpoints for members."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from starlette.responses import Response

from app import errors
from app.db import get_autocommit_connection, get_session
from app.ledger.idempotency import IdempotencyKey
from app.members import service
from app.members.schemas import EnrollMember, Member
from app.programs.auth import CanEarn, CanRead
from app.schemas import ExternalId

router = APIRouter(prefix="/v1/members", tags=["members"])

MemberPath = Annotated[ExternalId, Path(description="The member's external id")]


@router.post(
    "",
    status_code=201,
    response_model=Member,
    summary="Enrol a member",
    description=(
        "Creates the member (201), or returns it unchanged if it exists (200). With "
        "`referral_code`, the new member is recorded as referred by the code's owner: both get "
        "the program's referral bonus on this member's first qualifying order. A refused "
        "referral (unknown code, self-referral by id, e-mail or phone, a member that already "
        "has a referrer or was enrolled before) is a 422 and enrols nobody."
    ),
    responses={
        200: {"model": Member, "description": "The member already existed"},
        **errors.error_responses(
            errors.IdempotencyKeyMissing,
            errors.IdempotencyConflict,
            errors.ReferralCodeUnknown,
            errors.SelfReferral,
            errors.SelfReferralEmail,
            errors.SelfReferralPhone,
            errors.AlreadyReferred,
            errors.AlreadyEnrolled,
            body=True,
        ),
    },
)
async def enroll_member(
    body: EnrollMember,
    caller: CanEarn,
    key: IdempotencyKey,
    session: Annotated[AsyncSession, Depends(get_session, scope="function")],
) -> Response:
    stored = await service.enroll(session, program=caller.program, key=key, request=body)
    return stored.render()


@router.get(
    "/{external_id}",
    response_model=Member,
    summary="A member with its balance",
    responses=errors.error_responses(errors.MemberNotFound),
)
async def get_member(
    external_id: MemberPath,
    caller: CanRead,
    conn: Annotated[AsyncConnection, Depends(get_autocommit_connection)],
) -> Response:
    view = await service.get(conn, program=caller.program, external_id=external_id)
    return Response(view, media_type="application/json")
