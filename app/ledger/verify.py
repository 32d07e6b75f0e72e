"""`points-ledger verify`: check every invariant over the whole ledger.

Each check is one query that returns the offending rows (at most a sample); an empty result
means the invariant holds. `verify` reports every check and fails if any found drift.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

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
                            'entries_balanced']) AS expected(name)
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
        "each order's earned and taken-back points equal its earn and refund transactions",
        """
        SELECT o.program_id, o.order_id, o.earned_points, o.points_taken_back
          FROM orders o
          LEFT JOIN LATERAL (
              SELECT -sum(e.amount) AS earned FROM entries e
                JOIN accounts a ON a.id = e.account_id AND a.kind = 'issuance'
               WHERE e.transaction_id = o.earn_transaction_id) earn ON true
          LEFT JOIN LATERAL (
              SELECT sum((t.metadata ->> 'points_taken_back')::bigint) AS taken
                FROM transactions t
               WHERE t.program_id = o.program_id AND t.order_id = o.order_id
                 AND t.kind IN ('refund', 'cancel')) back ON true
         WHERE (o.earn_transaction_id IS NOT NULL AND o.earned_points <> coalesce(earn.earned, 0))
            OR o.points_taken_back <> coalesce(back.taken, 0)
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


async def verify(conn: AsyncConnection) -> Report:
    """Run every check in one REPEATABLE READ snapshot, so they see one consistent ledger."""
    await conn.execute(text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY"))
    results = []
    for check in CHECKS:
        rows = await conn.execute(text(f"SELECT * FROM ({check.sql}) AS offending LIMIT {SAMPLE}"))
        results.append(CheckResult(check, [dict(r._mapping) for r in rows]))
    return Report(results)
