"""HTTP endpoint for quotes (dry runs for the cart page)."""

from __future__ import annotations

from fastapi import APIRouter

from app import errors
from app.api.deps import Db
from app.api.problems import error_responses
from app.programs.access import CanRead
from app.quotes import service
from app.quotes.schemas import Quote, QuoteRequest

router = APIRouter(prefix="/v1/quotes", tags=["quotes"])


@router.post(
    "",
    response_model=Quote,
    summary="What an order would earn and what the member can redeem (writes nothing)",
    responses=error_responses(errors.CurrencyMismatch, body=True),
)
async def create_quote(body: QuoteRequest, caller: CanRead, database: Db) -> Quote:
    async with database.single() as db:
        return await service.quote(db, program=caller.program, request=body)
