"""What every HTTP endpoint may get from a request: the database, the group commit and the
idempotency key of a write. The caller (API key and scopes) is the programs feature's
(`app.programs.access`); the posting service is the points feature's (`app.points.deps`).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header, Request

from app import errors
from app.db import Database
from app.ledger.commit import Committer

# Dependencies are `async def` even when they do not await: FastAPI runs a plain `def`
# dependency in its thread pool, a thread hop (and GIL hand-over) per request for nothing.


async def get_database(request: Request) -> Database:
    database: Database = request.app.state.database
    return database


async def get_committer(request: Request) -> Committer:
    committer: Committer = request.app.state.committer
    return committer


Db = Annotated[Database, Depends(get_database)]
Commits = Annotated[Committer, Depends(get_committer)]


async def idempotency_key(
    key: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key",
            description="Unique per program and write; replaying it returns the first answer.",
            min_length=1,
            max_length=255,
            pattern=r"^[\x21-\x7E]+$",
        ),
    ] = None,
) -> str:
    if key is None:
        raise errors.IdempotencyKeyMissing("send an Idempotency-Key header with every write")
    return key


IdempotencyKey = Annotated[str, Depends(idempotency_key)]
