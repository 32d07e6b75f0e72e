"""Reading transactions, a member's history, and reversing a transaction."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from app import errors
from app.db import Session
from app.domain.dates import local_date
from app.ledger import members as ledger_members
from app.ledger.idempotency import Answer, fingerprint
from app.pagination import NEWEST, Cursor
from app.programs.models import Program
from app.transactions import repository
from app.transactions.schemas import HistoryPage, ReverseRequest

_HISTORY = Cursor("t")


def encode_cursor(transaction_id: int) -> str:
    return _HISTORY.encode(transaction_id)


def decode_cursor(cursor: str) -> int:
    return _HISTORY.decode(cursor)


async def get(db: Session, *, program: Program, transaction_id: int) -> dict[str, Any]:
    found = await repository.view(db, program_id=program.id, transaction_id=transaction_id)
    if found is None:
        raise errors.TransactionNotFound(f"no transaction {transaction_id} in this program")
    return found


_REVERSE = "SELECT o_replayed, o_status, o_body FROM transactions_reverse($1, $2, $3, $4, $5, $6)"


async def reverse(
    db: Session, *, program: Program, key: str, transaction_id: int, request: ReverseRequest
) -> Answer:
    """Post the exact opposite of a transaction (every leg negated), at most once
    (`transactions_reverse`: lots and projections follow; refusals are kept as the answer).
    Qualifying credit it takes back counts on today's local day."""
    request_print = fingerprint(
        "reverse", {"transaction_id": transaction_id, **request.model_dump(mode="json")}
    )
    row = await db.fetchrow(
        _REVERSE,
        program.id,
        key,
        request_print,
        transaction_id,
        request.reason,
        local_date(datetime.now(UTC), program.timezone),
    )
    assert row is not None
    return Answer(status=row["o_status"], body=row["o_body"], replayed=row["o_replayed"])


async def history(
    db: Session, *, program: Program, external_id: str, limit: int, cursor: str | None
) -> HistoryPage:
    before = decode_cursor(cursor) if cursor else NEWEST
    member_id = await ledger_members.require_member_id(
        db, program_id=program.id, external_id=external_id
    )
    rows = await repository.history(
        db, program_id=program.id, member_id=member_id, before=before, limit=limit + 1
    )
    items, next_cursor = _HISTORY.page(rows, limit)
    return HistoryPage(items=items, next_cursor=next_cursor)
