"""Reading transactions, a member's history, and reversing a transaction."""

from __future__ import annotations

import base64
import binascii

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from app import errors
from app.ledger import idempotency
from app.ledger.fingerprint import fingerprint
from app.members import repository as members
from app.programs.models import Program
from app.transactions import repository
from app.transactions.schemas import HistoryPage, ReverseRequest, Transaction

_NEWEST = 2**63 - 1


def encode_cursor(transaction_id: int) -> str:
    return base64.urlsafe_b64encode(f"t:{transaction_id}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        tag, _, value = raw.partition(":")
        transaction_id = int(value)
    except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
        raise errors.InvalidCursor("use next_cursor from a previous page") from exc
    if tag != "t" or not 0 < transaction_id <= _NEWEST:
        raise errors.InvalidCursor("use next_cursor from a previous page")
    return transaction_id


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
    before = decode_cursor(cursor) if cursor else _NEWEST
    member_id = await members.member_id(conn, program_id=program.id, external_id=external_id)
    if member_id is None:
        raise errors.MemberNotFound(f"no member {external_id!r} in this program")
    # One row more than asked tells whether an older page exists, without an empty last page.
    items = await repository.history(conn, member_id=member_id, before=before, limit=limit + 1)
    more = len(items) > limit
    items = items[:limit]
    return HistoryPage(items=items, next_cursor=encode_cursor(items[-1].id) if more else None)
