"""`points-ledger rebuild`: recompute every projection from the ledger alone.

Projections today: each member account's running balance. Writers are blocked (readers are not)
while it runs, so no posting can interleave with the fold.
"""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection


async def rebuild(conn: AsyncConnection) -> int:
    """Set every member account's balance to the sum of its entries; returns rows corrected."""
    await conn.execute(text("LOCK TABLE accounts IN EXCLUSIVE MODE"))
    result = await conn.execute(
        text(
            """
            UPDATE accounts a
               SET balance = coalesce(s.total, 0)
              FROM accounts x
              LEFT JOIN (SELECT account_id, sum(amount) AS total FROM entries GROUP BY account_id) s
                ON s.account_id = x.id
             WHERE a.id = x.id AND a.balance IS NOT NULL
               AND a.balance IS DISTINCT FROM coalesce(s.total, 0)
            """
        )
    )
    return int(result.rowcount or 0)
