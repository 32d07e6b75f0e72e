"""SQL for reading and reversing transactions."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from app.transactions.schemas import Entry, HistoryItem, Transaction

# "Spendable points" of a member: what is available or pending (held points are reserved).
SPENDABLE = "('available', 'pending')"

_TRANSACTION = text(
    f"""
    SELECT t.id, t.kind, m.external_id AS member, t.occurred_at, t.recorded_at, t.order_id,
           t.reason, t.metadata, t.reverses_id,
           (SELECT r.id FROM transactions r WHERE r.reverses_id = t.id) AS reversed_by,
           coalesce((SELECT sum(e.amount) FROM entries e JOIN accounts a ON a.id = e.account_id
                      WHERE e.transaction_id = t.id AND e.member_id = t.member_id
                        AND a.asset = 'points' AND a.kind IN {SPENDABLE}), 0)::bigint AS points
      FROM transactions t
      LEFT JOIN members m ON m.id = t.member_id
     WHERE t.id = :id AND t.program_id = :program_id
    """
)

_ENTRIES = text(
    """
    SELECT e.account_id, coalesce(m.external_id, 'program') AS owner, a.kind AS account,
           e.asset, e.amount
      FROM entries e
      JOIN accounts a ON a.id = e.account_id
      LEFT JOIN members m ON m.id = e.member_id
     WHERE e.transaction_id = :id
     ORDER BY e.leg
    """
)

# Newest first, keyset on the transaction id: one range scan of entries_member_history.
_HISTORY = text(
    f"""
    SELECT t.id, t.kind, h.points, t.occurred_at, t.recorded_at, t.order_id, t.metadata
      FROM (SELECT e.transaction_id,
                   sum(e.amount) FILTER (WHERE a.asset = 'points' AND a.kind IN {SPENDABLE})
                       AS points
              FROM entries e JOIN accounts a ON a.id = e.account_id
             WHERE e.member_id = :member_id AND e.transaction_id < :before
             GROUP BY e.transaction_id
             ORDER BY e.transaction_id DESC
             LIMIT :limit) AS h
      JOIN transactions t ON t.id = h.transaction_id
     ORDER BY t.id DESC
    """
)


async def find(
    conn: AsyncConnection | AsyncSession, *, program_id: int, transaction_id: int
) -> Transaction | None:
    row = (
        await conn.execute(_TRANSACTION, {"id": transaction_id, "program_id": program_id})
    ).one_or_none()
    if row is None:
        return None
    entries = (await conn.execute(_ENTRIES, {"id": transaction_id})).all()
    return Transaction(
        id=row.id,
        kind=row.kind,
        member=row.member,
        points=row.points,
        occurred_at=row.occurred_at,
        recorded_at=row.recorded_at,
        order_id=row.order_id,
        reason=row.reason,
        metadata=row.metadata,
        reverses=row.reverses_id,
        reversed_by=row.reversed_by,
        entries=[Entry.model_validate(e, from_attributes=True) for e in entries],
    )


async def reverse(
    session: AsyncSession, *, program_id: int, transaction_id: int, reason: str | None, key: str
) -> int:
    reversal_id: int = (
        await session.execute(
            text("SELECT ledger_reverse(:program_id, :id, :reason, :key)"),
            {"program_id": program_id, "id": transaction_id, "reason": reason, "key": key},
        )
    ).scalar_one()
    return reversal_id


async def history(
    conn: AsyncConnection, *, member_id: int, before: int, limit: int
) -> list[HistoryItem]:
    rows = await conn.execute(_HISTORY, {"member_id": member_id, "before": before, "limit": limit})
    return [
        HistoryItem(
            id=r.id,
            kind=r.kind,
            points=r.points or 0,
            occurred_at=r.occurred_at,
            recorded_at=r.recorded_at,
            order_id=r.order_id,
            metadata=r.metadata,
        )
        for r in rows
    ]
