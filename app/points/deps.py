"""The posting service as an endpoint dependency: group-committed postings (`Ledger`)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from app.api.deps import get_committer, get_database
from app.points.service import Ledger
from app.programs.access import get_caches


def get_ledger(request: Request) -> Ledger:
    return Ledger(get_database(request), get_committer(request), get_caches(request))


Postings = Annotated[Ledger, Depends(get_ledger)]
