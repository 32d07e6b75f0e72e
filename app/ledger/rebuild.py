"""`points-ledger rebuild`: recompute every projection from the ledger alone.

Projections today: each member account's running balance. Writers are blocked (readers are not)
while it runs, so no posting can interleave with the fold.
"""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from app.tiers.projection import rebuild_tiers


async def rebuild(conn: AsyncConnection) -> int:
    """Set every member account's balance to the sum of its entries and every lot's remaining
    points to what its movements left; returns rows corrected.

    Tier statuses are recomputed first, in their own short transactions under the members'
    advisory locks (never while this transaction holds the accounts lock, which an earn
    holding a member's lock may be waiting for); they count among the rows corrected."""
    tiers_corrected = await rebuild_tiers(conn.engine)
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
    # A lot's remaining points: what it was credited with, plus what its movements took (<0)
    # and gave back (>0). The movements are append-only, so they are the truth.
    lots = await conn.execute(
        text(
            """
            UPDATE lots l
               SET remaining = l.points + m.moved
              FROM (SELECT x.id, coalesce(sum(lm.points), 0) AS moved
                      FROM lots x LEFT JOIN lot_movements lm ON lm.lot_id = x.id
                     GROUP BY x.id) m
             WHERE m.id = l.id AND l.remaining <> l.points + m.moved
            """
        )
    )
    return int(result.rowcount or 0) + int(lots.rowcount or 0) + tiers_corrected
