"""SQL for reading transactions and a member's history."""

from __future__ import annotations

from typing import Any

from app.db import Session
from app.transactions.schemas import HistoryItem

# Newest first, keyset on the transaction id: one range scan of entries_member_history. The
# points are the member's spendable points (available and pending; held ones are reserved).
_HISTORY = """
    SELECT t.id, t.kind, h.points, t.occurred_at, t.recorded_at, t.order_id, t.metadata
      FROM (SELECT e.transaction_id,
                   sum(e.amount) FILTER (WHERE a.asset = 'points'
                                           AND a.kind IN ('available', 'pending')) AS points
              FROM entries e
              JOIN accounts a ON a.program_id = e.program_id AND a.id = e.account_id
             WHERE e.program_id = $1 AND e.member_id = $2 AND e.transaction_id < $3
             GROUP BY e.transaction_id
             ORDER BY e.transaction_id DESC
             LIMIT $4) AS h
      JOIN transactions t ON t.program_id = $1 AND t.id = h.transaction_id
     ORDER BY t.id DESC
"""


async def view(db: Session, *, program_id: int, transaction_id: int) -> dict[str, Any] | None:
    found: dict[str, Any] | None = await db.fetchval(
        "SELECT transactions_view($1, $2)", program_id, transaction_id
    )
    return found


async def history(
    db: Session, *, program_id: int, member_id: int, before: int, limit: int
) -> list[HistoryItem]:
    rows = await db.fetch(_HISTORY, program_id, member_id, before, limit)
    return [
        HistoryItem(
            id=r["id"],
            kind=r["kind"],
            points=r["points"] or 0,
            occurred_at=r["occurred_at"],
            recorded_at=r["recorded_at"],
            order_id=r["order_id"],
            metadata=r["metadata"],
        )
        for r in rows
    ]
