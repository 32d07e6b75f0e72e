"""The posting service as an endpoint dependency: group-committed postings (`Ledger`)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends

from app.api.deps import Commits, Db
from app.points.service import Ledger
from app.programs.access import Caches


async def get_ledger(database: Db, committer: Commits, caches: Caches) -> Ledger:
    return Ledger(database, committer, caches)


Postings = Annotated[Ledger, Depends(get_ledger)]
