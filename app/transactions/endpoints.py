"""HTTP endpoints for transactions and member history."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Depends, Path, Query
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from starlette.responses import Response

from app import errors
from app.db import get_autocommit_connection, get_session
from app.ledger.idempotency import IdempotencyKey
from app.programs.auth import CanRead, IsAdmin
from app.schemas import ExternalId
from app.transactions import service
from app.transactions.schemas import HistoryPage, ReverseRequest, Transaction

router = APIRouter(prefix="/v1", tags=["transactions"])

Connection = Annotated[AsyncConnection, Depends(get_autocommit_connection)]
TransactionId = Annotated[int, Path(ge=1, le=2**63 - 1, description="Transaction id")]


@router.get(
    "/transactions/{transaction_id}",
    response_model=Transaction,
    summary="A ledger transaction with its entries",
    responses=errors.error_responses(errors.TransactionNotFound),
)
async def get_transaction(
    transaction_id: TransactionId, caller: CanRead, conn: Connection
) -> Transaction:
    return await service.get(conn, program=caller.program, transaction_id=transaction_id)


@router.post(
    "/transactions/{transaction_id}/reverse",
    status_code=201,
    response_model=Transaction,
    summary="Reverse a transaction (once)",
    description="Posts the exact opposite of every entry. A second reversal is 409.",
    responses=errors.error_responses(
        errors.IdempotencyKeyMissing,
        errors.IdempotencyConflict,
        errors.TransactionNotFound,
        errors.AlreadyReversed,
        errors.NotReversible,
        errors.InsufficientPoints,
        body=True,
    ),
)
async def reverse_transaction(
    transaction_id: TransactionId,
    caller: IsAdmin,
    key: IdempotencyKey,
    session: Annotated[AsyncSession, Depends(get_session, scope="function")],
    body: Annotated[ReverseRequest | None, Body()] = None,
) -> Response:
    stored = await service.reverse(
        session,
        program=caller.program,
        key=key,
        transaction_id=transaction_id,
        request=body or ReverseRequest(),
    )
    return stored.render()


@router.get(
    "/members/{external_id}/transactions",
    response_model=HistoryPage,
    tags=["members"],
    summary="A member's transactions, newest first",
    responses=errors.error_responses(errors.MemberNotFound, errors.InvalidCursor),
)
async def member_history(
    external_id: Annotated[ExternalId, Path()],
    caller: CanRead,
    conn: Connection,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=64)] = None,
) -> HistoryPage:
    return await service.history(
        conn, program=caller.program, external_id=external_id, limit=limit, cursor=cursor
    )
