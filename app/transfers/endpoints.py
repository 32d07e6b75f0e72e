"""HTTP endpoint for transfers between members."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.responses import Response

from app import errors
from app.api.answers import render
from app.api.deps import Db, IdempotencyKey
from app.api.problems import error_responses
from app.programs.access import CanRedeem
from app.programs.models import Scope
from app.transfers import service
from app.transfers.schemas import TransferRequest, TransferResult

router = APIRouter(prefix="/v1/transfers", tags=["transfers"])


@router.post(
    "",
    status_code=201,
    response_model=TransferResult,
    summary="Move points from one member to another",
    description=(
        "Both legs or neither. Needs the `admin` scope, or `redeem` when the program allows "
        "member-initiated transfers."
    ),
    responses=error_responses(
        errors.IdempotencyKeyMissing,
        errors.IdempotencyConflict,
        errors.MemberNotFound,
        errors.InsufficientPoints,
        errors.SameMember,
        errors.TransfersDisabled,
        body=True,
    ),
)
async def transfer(
    body: TransferRequest, caller: CanRedeem, key: IdempotencyKey, database: Db
) -> Response:
    program = caller.program
    if not (caller.key.allows(Scope.ADMIN) or program.member_transfers):
        raise errors.TransfersDisabled("ask for an admin key, or enable member transfers")
    if body.from_member == body.to_member:
        raise errors.SameMember()
    async with database.single() as db:
        answer = await service.transfer(db, program=program, key=key, request=body)
    return render(answer, program)
