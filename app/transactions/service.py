"""Reading transactions, a member's history, and reversing a transaction."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from app import errors
from app.ledger import idempotency
from app.ledger.fingerprint import fingerprint
from app.members import repository as members
from app.pagination import NEWEST, Cursor
from app.programs.models import Program
from app.transactions import repository
from app.transactions.schemas import HistoryPage, ReverseRequest, Transaction

_HISTORY = Cursor("t")


def encode_cursor(transaction_id: int) -> str:
    return _HISTORY.encode(transaction_id)


def decode_cursor(cursor: str) -> int:
    return _HISTORY.decode(cursor)


async def get(conn: AsyncConnection, *, program: Program, transaction_id: int) -> Transaction:
    found = await repository.find(conn, program_id=program.id, transaction_id=transaction_id)
    if found is None:
        raise errors.TransactionNotFound(f"no transaction {transaction_id} in this program")
    return found


async def reverse(
    session: AsyncSession,
    *,
    program: Program,
    key: str,
    transaction_id: int,
    request: ReverseRequest,
) -> idempotency.StoredResponse:
    """Post the exact opposite of a transaction (every leg negated), at most once."""
    request_print = fingerprint(
        "reverse", {"transaction_id": transaction_id, **request.model_dump(mode="json")}
    )
    replay = await idempotency.claim(session, program.id, key, request_print)
    if replay is not None:
        return replay
    reversal_id = await repository.reverse(
        session,
        program_id=program.id,
        transaction_id=transaction_id,
        reason=request.reason,
        key=key,
    )
    reversal = await repository.find(session, program_id=program.id, transaction_id=reversal_id)
    assert reversal is not None  # posted above, in this transaction
    return await idempotency.complete(
        session, program.id, key, 201, reversal.model_dump(mode="json"), reversal_id
    )


async def history(
    conn: AsyncConnection, *, program: Program, external_id: str, limit: int, cursor: str | None
) -> HistoryPage:
    before = decode_cursor(cursor) if cursor else NEWEST
    member_id = await members.require_member_id(
        conn, program_id=program.id, external_id=external_id
    )
    rows = await repository.history(conn, member_id=member_id, before=before, limit=limit + 1)
    items, next_cursor = _HISTORY.page(rows, limit)
    return HistoryPage(items=items, next_cursor=next_cursor)
