"""HTTP endpoints for the caller's program settings (scope `admin`)."""

from __future__ import annotations

from typing import Annotated

import orjson
from fastapi import APIRouter, Header
from starlette.responses import Response

from app import errors
from app.api.answers import render
from app.api.deps import Db, IdempotencyKey
from app.api.problems import error_responses
from app.programs import settings
from app.programs.access import Caches, IsAdmin
from app.programs.settings import ProgramReplace, ProgramView

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
    responses=error_responses(),
)
async def get_program(caller: IsAdmin, database: Db) -> Response:
    async with database.single() as db:
        body = await settings.read(db, caller.program.id)
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
    responses=error_responses(
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
    database: Db,
    caches: Caches,
    if_match: IfMatch = None,
) -> Response:
    program_id = caller.program.id
    async with database.transaction() as tx:
        answer = await settings.replace(
            tx, program_id=program_id, key=key, request=body, if_match=if_match
        )
        # this process reads the new settings at once; the others when their cache expires,
        # and their postings under the old settings are refused as stale meanwhile
        tx.after_commit(lambda: caches.programs.forget(program_id))
    return render(answer, caller.program, {"ETag": settings.etag(answer.body)})
