"""HTTP endpoints for the caller's program settings (scope `admin`)."""

from __future__ import annotations

from typing import Annotated

import orjson
from fastapi import APIRouter, Depends, Header
from sqlalchemy.ext.asyncio import AsyncConnection
from starlette.responses import Response

from app import errors
from app.db import get_autocommit_connection
from app.ledger.idempotency import IdempotencyKey
from app.programs import settings
from app.programs.auth import IsAdmin
from app.programs.settings import ChangeSession, ProgramReplace, ProgramView

router = APIRouter(prefix="/v1/program", tags=["program"])

IfMatch = Annotated[
    str | None,
    Header(
        alias="If-Match",
        max_length=1000,
        description="Replace the settings only if they are still those of this ETag.",
    ),
]


@router.get(
    "",
    response_model=ProgramView,
    summary="The program's settings",
    description="The settings of the API key's program, with an `ETag`.",
    responses=errors.error_responses(),
)
async def get_program(
    caller: IsAdmin, conn: Annotated[AsyncConnection, Depends(get_autocommit_connection)]
) -> Response:
    body = await settings.read(conn, caller.program.id)
    return Response(
        orjson.dumps(body),
        media_type="application/json",
        headers={"ETag": settings.etag(body)},
    )


@router.put(
    "",
    response_model=ProgramView,
    summary="Replace the program's settings",
    description=settings.__doc__,
    responses=errors.error_responses(
        errors.IdempotencyKeyMissing,
        errors.IdempotencyConflict,
        errors.VersionMismatch,
        errors.VersionConflict,
        errors.CurrencyImmutable,
        errors.ReadOnlyField,
        body=True,
    ),
)
async def replace_program(
    body: ProgramReplace,
    caller: IsAdmin,
    key: IdempotencyKey,
    session: ChangeSession,
    if_match: IfMatch = None,
) -> Response:
    stored = await settings.replace(
        session, program_id=caller.program.id, key=key, request=body, if_match=if_match
    )
    response = stored.render()
    response.headers["ETag"] = settings.etag(stored.body)
    return response
