"""HTTP endpoint for transfers between members."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends
from sqlalchemy.ext.asyncio import AsyncConnection
from starlette.responses import Response

from app import errors
from app.db import get_autocommit_connection
from app.ledger import posting
from app.ledger.fingerprint import fingerprint
from app.ledger.idempotency import IdempotencyKey
from app.programs.auth import CanRedeem
from app.programs.models import Scope
from app.transfers.schemas import TransferRequest, TransferResult

router = APIRouter(prefix="/v1/transfers", tags=["transfers"])

_TRANSFER = posting.api_call(
    "api_transfer",
    "program_id",
    "key",
    "fingerprint",
    "from_member",
    "to_member",
    "points",
    "reason",
)


@router.post(
    "",
    status_code=201,
    response_model=TransferResult,
    summary="Move points from one member to another",
    description=(
        "Both legs or neither. Needs the `admin` scope, or `redeem` when the program allows "
        "member-initiated transfers."
    ),
    responses=errors.error_responses(
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
    body: TransferRequest,
    caller: CanRedeem,
    key: IdempotencyKey,
    conn: Annotated[AsyncConnection, Depends(get_autocommit_connection)],
) -> Response:
    program = caller.program
    if not (caller.key.allows(Scope.ADMIN) or program.member_transfers):
        raise errors.TransfersDisabled("ask for an admin key, or enable member transfers")
    if body.from_member == body.to_member:
        raise errors.SameMember()
    stored = await posting.run(
        conn,
        _TRANSFER,
        {
            "program_id": program.id,
            "key": key,
            "fingerprint": fingerprint("transfer", body.model_dump(mode="json")),
            "from_member": body.from_member,
            "to_member": body.to_member,
            "points": body.points,
            "reason": body.reason,
        },
    )
    return stored.render()
