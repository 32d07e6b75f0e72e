"""Transfers between two members of one program: one call of `transfers_post`, both legs or
neither. The sender's points are spent like a redemption (FIFO by expiry); the receiver repays
debt first, and the rest is a new lot that lapses by the program's expiry policy.

Accounting: member available (sender) -> member available (receiver)."""

from __future__ import annotations

from datetime import UTC, datetime

from app.db import Session
from app.ledger.idempotency import Answer, fingerprint
from app.points import planning
from app.programs.models import Program
from app.transfers.schemas import TransferRequest

_TRANSFER = (
    "SELECT o_replayed, o_status, o_body FROM transfers_post($1, $2, $3, $4, $5, $6, $7, $8)"
)


async def transfer(db: Session, *, program: Program, key: str, request: TransferRequest) -> Answer:
    row = await db.fetchrow(
        _TRANSFER,
        program.id,
        key,
        fingerprint("transfer", request.model_dump(mode="json")),
        request.from_member,
        request.to_member,
        request.points,
        request.reason,
        planning.lapses(program, datetime.now(UTC)),
    )
    assert row is not None
    return Answer(status=row["o_status"], body=row["o_body"], replayed=row["o_replayed"])
