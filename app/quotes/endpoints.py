"""HTTP endpoint for quotes (dry runs for the cart page)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends
from sqlalchemy.ext.asyncio import AsyncConnection

from app import errors
from app.db import get_autocommit_connection
from app.programs.auth import CanRead
from app.quotes import service
from app.quotes.schemas import Quote, QuoteRequest

router = APIRouter(prefix="/v1/quotes", tags=["quotes"])


@router.post(
    "",
    response_model=Quote,
    summary="What an order would earn and what the member can redeem (writes nothing)",
    responses=errors.error_responses(errors.CurrencyMismatch, body=True),
)
async def create_quote(
    body: QuoteRequest,
    caller: CanRead,
    conn: Annotated[AsyncConnection, Depends(get_autocommit_connection)],
) -> Quote:
    return await service.quote(conn, program=caller.program, request=body)
