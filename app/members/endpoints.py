"""HTTP endpoints for members."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path
from starlette.responses import Response

from app import errors
from app.api.answers import render
from app.api.deps import Db, IdempotencyKey
from app.api.problems import error_responses
from app.ledger.idempotency import Answer
from app.members import service
from app.members.schemas import EnrollMember, Member
from app.programs.access import CanEarn, CanRead
from app.schemas import ExternalId

router = APIRouter(prefix="/v1/members", tags=["members"])

MemberPath = Annotated[ExternalId, Path(description="The member's external id")]


@router.post(
    "",
    status_code=201,
    response_model=Member,
    summary="Enrol a member",
    description=(
        "Creates the member (201). An existing member is updated with what is given (PATCH "
        "semantics: a new birthday replaces the old one; attributes, e-mail and phone are "
        "merged key by key) and returned with 200. With "
        "`referral_code`, the new member is recorded as referred by the code's owner: both get "
        "the program's referral bonus on this member's first qualifying order. A refused "
        "referral (unknown code, self-referral by id, e-mail or phone, a member that already "
        "has a referrer or was enrolled before) is a 422 and enrols nobody."
    ),
    responses={
        200: {"model": Member, "description": "The member existed; it is updated"},
        **error_responses(
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
    database: Db,
) -> Response:
    async with database.transaction() as tx:
        answer = await service.enroll(tx, program=caller.program, key=key, request=body)
    return render(answer, caller.program)


@router.get(
    "/{external_id}",
    response_model=Member,
    summary="A member with its balance",
    responses=error_responses(errors.MemberNotFound),
)
async def get_member(
    external_id: MemberPath,
    caller: CanRead,
    database: Db,
) -> Response:
    async with database.single() as db:
        member = await service.get(db, program=caller.program, external_id=external_id)
    return render(Answer(status=200, body=member), caller.program)
