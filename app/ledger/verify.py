"""`points-ledger verify`: check every invariant over the whole ledger.

Each check is one query that returns the offending rows (at most a sample); an empty result
means the invariant holds. `verify` reports every check and fails if any found drift.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from app.tiers.projection import tier_drift

SAMPLE = 20


@dataclass(frozen=True)
class Check:
    name: str
    description: str
    sql: str


CHECKS: tuple[Check, ...] = (
    Check(
        "append_only_enforced",
        "the triggers that forbid UPDATE, DELETE and TRUNCATE on the ledger are present"
        " and enabled",
        """
        SELECT expected.name AS missing_or_disabled_trigger
          FROM unnest(ARRAY['transactions_append_only', 'transactions_no_truncate',
                            'entries_append_only', 'entries_no_truncate',
                            'entries_balanced', 'entries_keep_lots',
                            'lot_movements_append_only']) AS expected(name)
         WHERE NOT EXISTS (SELECT 1 FROM pg_trigger t
                            WHERE t.tgname = expected.name AND t.tgenabled = 'O')
        """,
    ),
    Check(
        "transactions_balanced",
        "every transaction's entries sum to zero per asset",
        """
        SELECT transaction_id, asset, sum(amount) AS total
          FROM entries GROUP BY transaction_id, asset HAVING sum(amount) <> 0
        """,
    ),
    Check(
        "transactions_have_entries",
        "every transaction has at least two entries",
        """
        SELECT t.id AS transaction_id, count(e.leg) AS entries
          FROM transactions t LEFT JOIN entries e ON e.transaction_id = t.id
         GROUP BY t.id HAVING count(e.leg) < 2
        """,
    ),
    Check(
        "entries_match_accounts",
        "every entry names an existing account of its program, asset and owner",
        """
        SELECT e.transaction_id, e.leg, e.account_id
          FROM entries e LEFT JOIN accounts a ON a.id = e.account_id
         WHERE a.id IS NULL OR a.program_id <> e.program_id OR a.asset <> e.asset
            OR a.member_id IS DISTINCT FROM e.member_id
        """,
    ),
    Check(
        "tenant_isolation",
        "a transaction's member and entries belong to the transaction's program",
        """
        SELECT t.id AS transaction_id
          FROM transactions t LEFT JOIN members m ON m.id = t.member_id
         WHERE t.member_id IS NOT NULL AND (m.id IS NULL OR m.program_id <> t.program_id)
        UNION ALL
        SELECT e.transaction_id FROM entries e JOIN transactions t ON t.id = e.transaction_id
         WHERE e.program_id <> t.program_id
        """,
    ),
    Check(
        "no_overdraft",
        "no member account balance is below zero",
        "SELECT id AS account_id, balance FROM accounts WHERE balance < 0",
    ),
    Check(
        "balances_match_entries",
        "every member account's stored balance equals the sum of its entries",
        """
        SELECT a.id AS account_id, a.balance AS stored, coalesce(s.total, 0) AS from_entries
          FROM accounts a
          LEFT JOIN (SELECT account_id, sum(amount) AS total FROM entries GROUP BY account_id) s
            ON s.account_id = a.id
         WHERE a.balance IS NOT NULL AND a.balance <> coalesce(s.total, 0)
        """,
    ),
    Check(
        "pending_matches_lots",
        "every member's pending balance equals what is left of its pending lots",
        """
        SELECT a.member_id, a.balance AS pending, coalesce(l.remaining, 0) AS in_lots
          FROM accounts a
          LEFT JOIN (SELECT member_id, sum(remaining) AS remaining FROM pending_lots
                      GROUP BY member_id) l ON l.member_id = a.member_id
         WHERE a.kind = 'pending' AND a.asset = 'points' AND a.balance <> coalesce(l.remaining, 0)
        """,
    ),
    Check(
        "held_matches_open_holds",
        "every member's held balance equals the points of its open holds",
        """
        SELECT a.member_id, a.balance AS held, coalesce(h.points, 0) AS in_holds
          FROM accounts a
          LEFT JOIN (SELECT member_id, sum(points) AS points FROM holds WHERE status = 'open'
                      GROUP BY member_id) h ON h.member_id = a.member_id
         WHERE a.kind = 'held' AND a.asset = 'points' AND a.balance <> coalesce(h.points, 0)
        """,
    ),
    Check(
        "debt_not_positive",
        "no member owes a negative number of points",
        "SELECT id AS account_id, balance FROM accounts WHERE kind = 'debt' AND balance > 0",
    ),
    Check(
        "orders_match_ledger",
        "each order's earned and taken-back points (and qualifying credit) equal its earn and"
        " refund transactions",
        """
        SELECT o.program_id, o.order_id, o.earned_points, o.points_taken_back,
               o.earned_qualifying, o.qualifying_taken_back
          FROM orders o
          LEFT JOIN LATERAL (
              SELECT -sum(e.amount) FILTER (WHERE a.asset = 'points') AS earned,
                     -sum(e.amount) FILTER (WHERE a.asset = 'qualifying') AS qualifying
                FROM entries e
                JOIN accounts a ON a.id = e.account_id AND a.kind = 'issuance'
               WHERE e.transaction_id = o.earn_transaction_id) earn ON true
          LEFT JOIN LATERAL (
              SELECT sum((t.metadata ->> 'points_taken_back')::bigint) AS taken,
                     sum((t.metadata ->> 'qualifying_taken_back')::bigint) AS qualifying
                FROM transactions t
               WHERE t.program_id = o.program_id AND t.order_id = o.order_id
                 AND t.kind IN ('refund', 'cancel')) back ON true
         WHERE (o.earn_transaction_id IS NOT NULL
                AND (o.earned_points <> coalesce(earn.earned, 0)
                     OR o.earned_qualifying <> coalesce(earn.qualifying, 0)))
            OR o.points_taken_back <> coalesce(back.taken, 0)
            OR o.qualifying_taken_back <> coalesce(back.qualifying, 0)
        """,
    ),
    Check(
        "reversals_exact",
        "a reversal negates every entry of the transaction it reverses, once",
        """
        SELECT r.id AS reversal_id, r.reverses_id
          FROM transactions r
         WHERE r.reverses_id IS NOT NULL
           AND EXISTS (
               (SELECT account_id, -amount FROM entries WHERE transaction_id = r.reverses_id
                EXCEPT ALL
                SELECT account_id, amount FROM entries WHERE transaction_id = r.id)
               UNION ALL
               (SELECT account_id, amount FROM entries WHERE transaction_id = r.id
                EXCEPT ALL
                SELECT account_id, -amount FROM entries WHERE transaction_id = r.reverses_id))
        """,
    ),
    Check(
        "idempotency_keys_complete",
        "every idempotency key has a stored response, and its transaction exists in its program",
        """
        SELECT k.program_id, k.key
          FROM idempotency_keys k
          LEFT JOIN transactions t ON t.id = k.transaction_id
         WHERE k.response IS NULL
            OR (k.transaction_id IS NOT NULL
                AND (t.id IS NULL OR t.program_id <> k.program_id
                     OR t.idempotency_key IS DISTINCT FROM k.key))
        """,
    ),
    Check(
        "one_posting_per_key",
        "no idempotency key produced more than one transaction",
        """
        SELECT program_id, idempotency_key, count(*) AS postings
          FROM transactions WHERE idempotency_key IS NOT NULL
         GROUP BY program_id, idempotency_key HAVING count(*) > 1
        """,
    ),
    Check(
        "lots_match_available",
        "every member's available points equal what is left of its lots",
        """
        SELECT a.member_id, a.balance AS available, coalesce(l.remaining, 0) AS in_lots
          FROM accounts a
          LEFT JOIN (SELECT member_id, sum(remaining) AS remaining FROM lots
                      GROUP BY member_id) l ON l.member_id = a.member_id
         WHERE a.kind = 'available' AND a.asset = 'points' AND a.member_id IS NOT NULL
           AND a.balance <> coalesce(l.remaining, 0)
        """,
    ),
    Check(
        "lots_match_movements",
        "what each lot has lost (points - remaining) is what its recorded movements took",
        """
        SELECT l.id AS lot_id, l.points, l.remaining, coalesce(m.moved, 0) AS moved
          FROM lots l
          LEFT JOIN (SELECT lot_id, sum(points) AS moved FROM lot_movements
                      GROUP BY lot_id) m ON m.lot_id = l.id
         WHERE l.points - l.remaining <> -coalesce(m.moved, 0)
        """,
    ),
    Check(
        "lots_follow_entries",
        "each transaction moved a member's lots (new lots plus movements) by exactly its"
        " entries on the member's available points (transactions since lots exist)",
        """
        WITH since AS (
            SELECT min(id) AS id FROM (SELECT min(transaction_id) AS id FROM lots
                                       UNION ALL
                                       SELECT min(transaction_id) FROM lot_movements) s),
        posted AS (
            SELECT e.transaction_id, e.member_id, sum(e.amount) AS amount
              FROM entries e JOIN accounts a ON a.id = e.account_id
             WHERE a.kind = 'available' AND a.asset = 'points' AND e.member_id IS NOT NULL
               AND e.transaction_id >= (SELECT id FROM since)
             GROUP BY e.transaction_id, e.member_id),
        in_lots AS (
            SELECT transaction_id, member_id, sum(points) AS amount
              FROM (SELECT m.transaction_id, l.member_id, m.points
                      FROM lot_movements m JOIN lots l ON l.id = m.lot_id
                    UNION ALL
                    SELECT transaction_id, member_id, points FROM lots
                     WHERE transaction_id IS NOT NULL) x
             GROUP BY transaction_id, member_id)
        SELECT coalesce(p.transaction_id, l.transaction_id) AS transaction_id,
               coalesce(p.member_id, l.member_id) AS member_id,
               coalesce(p.amount, 0) AS entries, coalesce(l.amount, 0) AS lots
          FROM posted p
          FULL JOIN in_lots l ON l.transaction_id = p.transaction_id
                             AND l.member_id = p.member_id
         WHERE coalesce(p.amount, 0) <> coalesce(l.amount, 0)
        """,
    ),
    Check(
        "lots_expire_on_time",
        "an expire takes only its own lot and not before it is due (nor before the inactivity"
        " deadline); spending (redeem, hold, transfer, adjust) never takes a lot already due",
        """
        SELECT t.id AS transaction_id, t.kind, m.lot_id, l.expires_at, t.recorded_at
          FROM lot_movements m
          JOIN lots l ON l.id = m.lot_id
          JOIN transactions t ON t.id = m.transaction_id
         WHERE m.points < 0
           AND ((t.kind = 'expire' AND t.metadata ? 'lot_id'
                 AND (m.lot_id <> (t.metadata ->> 'lot_id')::bigint
                      OR l.expires_at IS NULL OR t.recorded_at < l.expires_at))
             OR (t.kind = 'expire' AND t.metadata ? 'deadline'
                 AND t.recorded_at < (t.metadata ->> 'deadline')::timestamptz)
             OR (t.kind IN ('redeem', 'hold', 'transfer', 'adjust')
                 AND t.recorded_at >= l.expires_at))
        """,
    ),
)


@dataclass
class CheckResult:
    check: Check
    offending: list[dict[str, Any]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.offending


@dataclass
class Report:
    results: list[CheckResult]

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.results)


# Checked in Python (app.tiers.projection): the rules are Python functions, not SQL.
TIERS_CHECK = Check(
    "tiers_match_ledger",
    "every stored tier status equals the one recomputed from scratch from the member's"
    " qualifying entries and memberships (to its evaluated_on)",
    "",
)


async def verify(conn: AsyncConnection) -> Report:
    """Run every check in one REPEATABLE READ snapshot, so they see one consistent ledger."""
    await conn.execute(text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY"))
    results = []
    for check in CHECKS:
        rows = await conn.execute(text(f"SELECT * FROM ({check.sql}) AS offending LIMIT {SAMPLE}"))
        results.append(CheckResult(check, [dict(r._mapping) for r in rows]))
    results.append(CheckResult(TIERS_CHECK, await tier_drift(conn, SAMPLE)))
    return Report(results)
