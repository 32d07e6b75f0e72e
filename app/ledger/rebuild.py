"""`points-ledger rebuild`: recompute every projection from the ledger alone.

The projections: each member account's running balance, what is left of each lot, the members'
daily figures (`member_days`), when each member's maintenance is due, and the features' own
(tier statuses: app.ledger.checks). Postings are blocked while the ledger's projections are
recomputed (readers are not), so no posting interleaves with the fold.
"""

from __future__ import annotations

from app.db import Database
from app.ledger.checks import feature_rebuilds

_BALANCES = """
    UPDATE accounts a
       SET balance = coalesce(s.total, 0)
      FROM accounts x
      LEFT JOIN (SELECT program_id, account_id, sum(amount) AS total FROM entries
                  GROUP BY program_id, account_id) s
        ON s.program_id = x.program_id AND s.account_id = x.id
     WHERE a.program_id = x.program_id AND a.id = x.id AND a.balance IS NOT NULL
       AND a.balance IS DISTINCT FROM coalesce(s.total, 0)
"""
# A lot's remaining points: what it was credited with, plus what its movements took (<0) and
# gave back (>0). The movements are append-only, so they are the truth.
_LOTS = """
    UPDATE lots l
       SET remaining = l.points + m.moved
      FROM (SELECT x.program_id, x.id, coalesce(sum(lm.points), 0) AS moved
              FROM lots x
              LEFT JOIN lot_movements lm ON lm.program_id = x.program_id AND lm.lot_id = x.id
             GROUP BY x.program_id, x.id) m
     WHERE m.program_id = l.program_id AND m.id = l.id AND l.remaining <> l.points + m.moved
"""
# The daily figures, by local day of each program (for the programs that keep them).
_DAYS = """
    WITH ledger AS (
        SELECT e.program_id, e.member_id, (t.occurred_at AT TIME ZONE p.timezone)::date AS day,
               coalesce(sum(e.amount) FILTER (WHERE t.kind = 'earn' AND t.order_id IS NOT NULL
                                             AND e.asset = 'points'), 0)
                   AS earned,
               coalesce(sum(e.amount) FILTER (WHERE e.asset = 'qualifying'), 0) AS qualifying,
               max(t.recorded_at) FILTER (WHERE e.asset = 'qualifying') AS changed_at,
               max(t.recorded_at) FILTER (WHERE e.asset = 'qualifying' AND e.amount < 0)
                   AS taken_back_at
          FROM entries e
          JOIN transactions t ON t.program_id = e.program_id AND t.id = e.transaction_id
          JOIN programs p ON p.id = e.program_id
         WHERE e.member_id IS NOT NULL
         GROUP BY 1, 2, 3),
    wrong AS (
        DELETE FROM member_days d
         WHERE NOT EXISTS (SELECT 1 FROM ledger l
                            WHERE l.program_id = d.program_id AND l.member_id = d.member_id
                              AND l.day = d.day AND l.earned = d.earned
                              AND l.qualifying = d.qualifying)
        RETURNING 1)
    INSERT INTO member_days (program_id, member_id, day, earned, qualifying,
                             qualifying_changed_at, qualifying_taken_back_at)
    SELECT l.program_id, l.member_id, l.day, l.earned, l.qualifying, l.changed_at,
           l.taken_back_at
      FROM ledger l
     WHERE (l.earned <> 0 OR l.changed_at IS NOT NULL)
       AND NOT EXISTS (SELECT 1 FROM member_days d
                        WHERE d.program_id = l.program_id AND d.member_id = l.member_id
                          AND d.day = l.day AND d.earned = l.earned
                          AND d.qualifying = l.qualifying)
"""
# When each member's maintenance is next due: the earliest of its pending releases, open holds'
# expiry, lots' expiry, and the inactivity deadline (now, if it has passed with points left).
_DUE = """
    UPDATE members m SET due_at = w.at
      FROM (SELECT x.program_id, x.id,
                   least((SELECT min(release_at) FROM pending_lots p
                           WHERE p.program_id = x.program_id AND p.member_id = x.id
                             AND p.remaining > 0),
                         (SELECT min(expires_at) FROM holds h
                           WHERE h.program_id = x.program_id AND h.member_id = x.id
                             AND h.status = 'open'),
                         (SELECT min(expires_at) FROM lots l
                           WHERE l.program_id = x.program_id AND l.member_id = x.id
                             AND l.remaining > 0),
                         CASE WHEN x.inactive_at > now() THEN x.inactive_at
                              WHEN x.inactive_at IS NOT NULL
                                   AND EXISTS (SELECT 1 FROM lots l
                                                WHERE l.program_id = x.program_id
                                                  AND l.member_id = x.id AND l.remaining > 0)
                              THEN now() END) AS at
              FROM members x) w
     WHERE m.program_id = w.program_id AND m.id = w.id AND m.due_at IS DISTINCT FROM w.at
       AND (m.due_at IS NULL OR w.at IS NULL OR w.at < m.due_at)
"""


def _count(status: str) -> int:
    """Rows affected, from a command status such as "UPDATE 3" or "INSERT 0 2"."""
    return int(status.rsplit(" ", 1)[-1])


async def rebuild(database: Database) -> int:
    """Recompute every projection; returns the rows corrected.

    The features' projections first (tier statuses, in short transactions of their own under
    the members' locks), then the ledger's, in one transaction that keeps postings out."""
    corrected = 0
    for feature in feature_rebuilds():
        corrected += await feature(database)
    async with database.transaction() as tx:
        # EXCLUSIVE: no posting can lock a member row until the fold is done; reads go on
        await tx.execute("LOCK TABLE members IN EXCLUSIVE MODE")
        for statement in (_BALANCES, _LOTS, _DAYS, _DUE):
            corrected += _count(await tx.execute(statement))
    return corrected
