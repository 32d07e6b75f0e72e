"""HTTP endpoints for transactions and member history."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Path, Query
from starlette.responses import Response

from app import errors
from app.api.answers import render
from app.api.deps import Db, IdempotencyKey
from app.api.problems import error_responses
from app.ledger.idempotency import Answer
from app.programs.access import CanRead, IsAdmin
from app.schemas import ExternalId
from app.transactions import service
from app.transactions.schemas import HistoryPage, ReverseRequest, Transaction

router = APIRouter(prefix="/v1", tags=["transactions"])

TransactionId = Annotated[int, Path(ge=1, le=2**63 - 1, description="Transaction id")]


@router.get(
    "/transactions/{transaction_id}",
    response_model=Transaction,
    summary="A ledger transaction with its entries",
    responses=error_responses(errors.TransactionNotFound),
)
async def get_transaction(transaction_id: TransactionId, caller: CanRead, database: Db) -> Response:
    async with database.single() as db:
        view = await service.get(db, program=caller.program, transaction_id=transaction_id)
    return render(Answer(status=200, body=view), caller.program)


@router.post(
    "/transactions/{transaction_id}/reverse",
    status_code=201,
    response_model=Transaction,
    summary="Reverse a transaction (once)",
    description="Posts the exact opposite of every entry. A second reversal is 409.",
    responses=error_responses(
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
    database: Db,
    body: Annotated[ReverseRequest | None, Body()] = None,
) -> Response:
    async with database.single() as db:
        answer = await service.reverse(
            db,
            program=caller.program,
            key=key,
            transaction_id=transaction_id,
            request=body or ReverseRequest(),
        )
    return render(answer, caller.program)


@router.get(
    "/members/{external_id}/transactions",
    response_model=HistoryPage,
    tags=["members"],
    summary="A member's transactions, newest first",
    responses=error_responses(errors.MemberNotFound, errors.InvalidCursor),
)
async def member_history(
    external_id: Annotated[ExternalId, Path()],
    caller: CanRead,
    database: Db,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=64)] = None,
) -> HistoryPage:
    async with database.single() as db:
        return await service.history(
            db, program=caller.program, external_id=external_id, limit=limit, cursor=cursor
        )
