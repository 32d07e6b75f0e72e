"""`points-ledger verify`: check every invariant over the whole ledger.

Each check is one set-based query over whole tables that returns the offending rows (at most a
sample); an empty result means the invariant holds. The tables are analyzed first and nested
loops are off, so no check is planned as a scan per row on stale statistics: verify's cost
grows with the size of the ledger, linearly, whatever was just bulk-loaded. `verify` reports
every check, the features' too (app.ledger.checks), and fails if any found drift.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from app.db import Database
from app.ledger.checks import feature_checks

SAMPLE = 20

LEDGER_TABLES = (
    "transactions",
    "entries",
    "accounts",
    "members",
    "lots",
    "lot_movements",
    "pending_lots",
    "holds",
    "orders",
    "idempotency_keys",
    "member_days",
)


@dataclass(frozen=True)
class Check:
    name: str
    description: str
    sql: str


CHECKS: tuple[Check, ...] = (
    Check(
        "append_only_enforced",
        "the triggers that forbid UPDATE, DELETE and TRUNCATE on the ledger, and the one that"
        " checks every leg, are present and enabled",
        """
        SELECT expected.name AS missing_or_disabled_trigger
          FROM unnest(ARRAY['transactions_append_only', 'transactions_no_truncate',
                            'entries_append_only', 'entries_no_truncate', 'entries_checked',
                            'lot_movements_append_only']) AS expected(name)
         WHERE NOT EXISTS (SELECT 1 FROM pg_trigger t
                            WHERE t.tgname = expected.name AND t.tgenabled = 'O')
        """,
    ),
    Check(
        "transactions_balanced",
        "every transaction's entries sum to zero per asset",
        """
        SELECT program_id, transaction_id, asset, sum(amount) AS total
          FROM entries GROUP BY program_id, transaction_id, asset HAVING sum(amount) <> 0
        """,
    ),
    Check(
        "transactions_have_entries",
        "every transaction has at least two entries, and every entry a transaction",
        """
        SELECT t.program_id, t.id AS transaction_id, coalesce(e.legs, 0) AS entries
          FROM transactions t
          FULL JOIN (SELECT program_id, transaction_id, count(*) AS legs FROM entries
                      GROUP BY program_id, transaction_id) e
            ON e.program_id = t.program_id AND e.transaction_id = t.id
         WHERE t.id IS NULL OR coalesce(e.legs, 0) < 2
        """,
    ),
    Check(
        "entries_match_accounts",
        "every entry names an existing account of its program, asset and owner",
        """
        SELECT e.program_id, e.transaction_id, e.leg, e.account_id
          FROM entries e
          LEFT JOIN accounts a ON a.program_id = e.program_id AND a.id = e.account_id
         WHERE a.id IS NULL OR a.asset <> e.asset OR a.member_id IS DISTINCT FROM e.member_id
        """,
    ),
    Check(
        "tenant_isolation",
        "a transaction's member belongs to the transaction's program",
        """
        SELECT t.program_id, t.id AS transaction_id, t.member_id
          FROM transactions t
          LEFT JOIN members m ON m.program_id = t.program_id AND m.id = t.member_id
         WHERE t.member_id IS NOT NULL AND m.id IS NULL
        """,
    ),
    Check(
        "no_overdraft",
        "no member account balance is below zero (debt aside) or beyond 2^53 - 1",
        """
        SELECT program_id, id AS account_id, kind, balance FROM accounts
         WHERE (kind <> 'debt' AND balance < 0) OR abs(balance) > 9007199254740991
        """,
    ),
    Check(
        "balances_match_entries",
        "every member account's stored balance equals the sum of its entries",
        """
        SELECT a.program_id, a.id AS account_id, a.balance AS stored,
               coalesce(s.total, 0) AS from_entries
          FROM accounts a
          LEFT JOIN (SELECT program_id, account_id, sum(amount) AS total FROM entries
                      GROUP BY program_id, account_id) s
            ON s.program_id = a.program_id AND s.account_id = a.id
         WHERE a.balance IS NOT NULL AND a.balance <> coalesce(s.total, 0)
        """,
    ),
    Check(
        "pending_matches_lots",
        "every member's pending balance equals what is left of its pending lots",
        """
        SELECT a.program_id, a.member_id, a.balance AS pending, coalesce(l.remaining, 0) AS in_lots
          FROM accounts a
          LEFT JOIN (SELECT program_id, member_id, sum(remaining) AS remaining
                       FROM pending_lots GROUP BY program_id, member_id) l
            ON l.program_id = a.program_id AND l.member_id = a.member_id
         WHERE a.kind = 'pending' AND a.asset = 'points' AND a.balance <> coalesce(l.remaining, 0)
        """,
    ),
    Check(
        "held_matches_open_holds",
        "every member's held balance equals the points of its open holds",
        """
        SELECT a.program_id, a.member_id, a.balance AS held, coalesce(h.points, 0) AS in_holds
          FROM accounts a
          LEFT JOIN (SELECT program_id, member_id, sum(points) AS points FROM holds
                      WHERE status = 'open' GROUP BY program_id, member_id) h
            ON h.program_id = a.program_id AND h.member_id = a.member_id
         WHERE a.kind = 'held' AND a.asset = 'points' AND a.balance <> coalesce(h.points, 0)
        """,
    ),
    Check(
        "debt_not_positive",
        "no member owes a negative number of points",
        "SELECT program_id, id AS account_id, balance FROM accounts"
        " WHERE kind = 'debt' AND balance > 0",
    ),
    Check(
        "orders_match_ledger",
        "each order's earned and taken-back points (and qualifying credit) equal its earn and"
        " refund transactions",
        """
        WITH earn AS (
            SELECT e.program_id, e.transaction_id,
                   -sum(e.amount) FILTER (WHERE a.asset = 'points') AS earned,
                   -sum(e.amount) FILTER (WHERE a.asset = 'qualifying') AS qualifying
              FROM entries e
              JOIN accounts a ON a.program_id = e.program_id AND a.id = e.account_id
             WHERE a.kind = 'issuance'
             GROUP BY e.program_id, e.transaction_id),
        back AS (
            SELECT program_id, order_id,
                   sum((metadata ->> 'points_taken_back')::bigint) AS taken,
                   sum((metadata ->> 'qualifying_taken_back')::bigint) AS qualifying
              FROM transactions
             WHERE kind IN ('refund', 'cancel') AND order_id IS NOT NULL
             GROUP BY program_id, order_id)
        SELECT o.program_id, o.order_id, o.earned_points, o.points_taken_back,
               o.earned_qualifying, o.qualifying_taken_back
          FROM orders o
          LEFT JOIN earn ON earn.program_id = o.program_id
                        AND earn.transaction_id = o.earn_transaction_id
          LEFT JOIN back ON back.program_id = o.program_id AND back.order_id = o.order_id
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
        WITH pairs AS (
            SELECT r.program_id, r.id AS reversal_id, r.reverses_id
              FROM transactions r WHERE r.reverses_id IS NOT NULL),
        legs AS (
            SELECT p.program_id, p.reversal_id, e.account_id, e.amount AS amount, 1 AS side
              FROM pairs p
              JOIN entries e ON e.program_id = p.program_id AND e.transaction_id = p.reverses_id
            UNION ALL
            SELECT p.program_id, p.reversal_id, e.account_id, e.amount, -1
              FROM pairs p
              JOIN entries e ON e.program_id = p.program_id AND e.transaction_id = p.reversal_id)
        SELECT program_id, reversal_id, account_id
          FROM legs
         GROUP BY program_id, reversal_id, account_id
        HAVING sum(amount * side) <> 2 * sum(amount) FILTER (WHERE side = 1)
            OR sum(amount) <> 0
        """,
    ),
    Check(
        "idempotency_keys_complete",
        "every idempotency key has its answer, and the transaction it posted exists in its"
        " program under that key",
        """
        SELECT k.program_id, k.key
          FROM idempotency_keys k
          LEFT JOIN transactions t ON t.program_id = k.program_id AND t.id = k.transaction_id
         WHERE k.response IS NULL
            OR (k.transaction_id IS NOT NULL
                AND (t.id IS NULL OR t.idempotency_key IS DISTINCT FROM k.key))
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
        SELECT a.program_id, a.member_id, a.balance AS available,
               coalesce(l.remaining, 0) AS in_lots
          FROM accounts a
          LEFT JOIN (SELECT program_id, member_id, sum(remaining) AS remaining FROM lots
                      GROUP BY program_id, member_id) l
            ON l.program_id = a.program_id AND l.member_id = a.member_id
         WHERE a.kind = 'available' AND a.asset = 'points' AND a.member_id IS NOT NULL
           AND a.balance <> coalesce(l.remaining, 0)
        """,
    ),
    Check(
        "lots_match_movements",
        "what each lot has lost (points - remaining) is what its recorded movements took",
        """
        SELECT l.program_id, l.id AS lot_id, l.points, l.remaining, coalesce(m.moved, 0) AS moved
          FROM lots l
          LEFT JOIN (SELECT program_id, lot_id, sum(points) AS moved FROM lot_movements
                      GROUP BY program_id, lot_id) m
            ON m.program_id = l.program_id AND m.lot_id = l.id
         WHERE l.points - l.remaining <> -coalesce(m.moved, 0)
        """,
    ),
    Check(
        "lots_follow_entries",
        "each transaction moved a member's lots (new lots plus movements) by exactly its"
        " entries on the member's available points",
        """
        WITH posted AS (
            SELECT e.program_id, e.transaction_id, e.member_id, sum(e.amount) AS amount
              FROM entries e
              JOIN accounts a ON a.program_id = e.program_id AND a.id = e.account_id
             WHERE a.kind = 'available' AND a.asset = 'points' AND e.member_id IS NOT NULL
             GROUP BY e.program_id, e.transaction_id, e.member_id),
        in_lots AS (
            SELECT program_id, transaction_id, member_id, sum(points) AS amount
              FROM (SELECT m.program_id, m.transaction_id, l.member_id, m.points
                      FROM lot_movements m
                      JOIN lots l ON l.program_id = m.program_id AND l.id = m.lot_id
                    UNION ALL
                    SELECT program_id, transaction_id, member_id, points FROM lots) x
             GROUP BY program_id, transaction_id, member_id)
        SELECT coalesce(p.program_id, l.program_id) AS program_id,
               coalesce(p.transaction_id, l.transaction_id) AS transaction_id,
               coalesce(p.member_id, l.member_id) AS member_id,
               coalesce(p.amount, 0) AS entries, coalesce(l.amount, 0) AS lots
          FROM posted p
          FULL JOIN in_lots l ON l.program_id = p.program_id
                             AND l.transaction_id = p.transaction_id
                             AND l.member_id = p.member_id
         WHERE coalesce(p.amount, 0) <> coalesce(l.amount, 0)
        """,
    ),
    Check(
        "lots_expire_on_time",
        "an expire takes only its own lot and not before it is due (nor before the inactivity"
        " deadline); spending (redeem, hold, transfer, adjust) never takes a lot already due",
        """
        SELECT t.program_id, t.id AS transaction_id, t.kind, m.lot_id, l.expires_at,
               t.recorded_at
          FROM lot_movements m
          JOIN lots l ON l.program_id = m.program_id AND l.id = m.lot_id
          JOIN transactions t ON t.program_id = m.program_id AND t.id = m.transaction_id
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
    Check(
        "maintenance_scheduled",
        "every member with due work (a pending release, an open hold, a lot expiry, points"
        " under an inactivity deadline) has its maintenance due no later than that work",
        """
        WITH work AS (
            SELECT program_id, member_id, min(release_at) AS at FROM pending_lots
             WHERE remaining > 0 GROUP BY program_id, member_id
            UNION ALL
            SELECT program_id, member_id, min(expires_at) FROM holds
             WHERE status = 'open' GROUP BY program_id, member_id
            UNION ALL
            SELECT program_id, member_id, min(expires_at) FROM lots
             WHERE remaining > 0 AND expires_at IS NOT NULL GROUP BY program_id, member_id
            UNION ALL
            -- points under an inactivity deadline: some maintenance must be scheduled (points
            -- credited after the deadline make it due at their credit, later than the deadline)
            SELECT m.program_id, m.id, 'infinity'::timestamptz FROM members m
             WHERE m.inactive_at IS NOT NULL
               AND EXISTS (SELECT 1 FROM lots l WHERE l.program_id = m.program_id
                              AND l.member_id = m.id AND l.remaining > 0))
        SELECT w.program_id, w.member_id, min(w.at) AS first_work, m.due_at
          FROM work w
          JOIN members m ON m.program_id = w.program_id AND m.id = w.member_id
         GROUP BY w.program_id, w.member_id, m.due_at
        HAVING m.due_at IS NULL OR m.due_at > min(w.at)
        """,
    ),
    Check(
        "member_days_match_ledger",
        "each member's daily figures (what orders earned, the qualifying credit) equal the"
        " ledger's, by local day of the program",
        """
        WITH ledger AS (
            SELECT e.program_id, e.member_id,
                   (t.occurred_at AT TIME ZONE p.timezone)::date AS day,
                   coalesce(sum(e.amount) FILTER (WHERE t.kind = 'earn' AND t.order_id IS NOT NULL
                                             AND e.asset = 'points'),
                            0) AS earned,
                   coalesce(sum(e.amount) FILTER (WHERE e.asset = 'qualifying'), 0) AS qualifying
              FROM entries e
              JOIN transactions t ON t.program_id = e.program_id AND t.id = e.transaction_id
              JOIN programs p ON p.id = e.program_id
             WHERE e.member_id IS NOT NULL
             GROUP BY 1, 2, 3)
        SELECT coalesce(l.program_id, d.program_id) AS program_id,
               coalesce(l.member_id, d.member_id) AS member_id,
               coalesce(l.day, d.day) AS day,
               l.earned AS ledger_earned, d.earned AS stored_earned,
               l.qualifying AS ledger_qualifying, d.qualifying AS stored_qualifying
          FROM ledger l
          FULL JOIN member_days d
            ON d.program_id = l.program_id AND d.member_id = l.member_id AND d.day = l.day
         WHERE coalesce(l.earned, 0) <> coalesce(d.earned, 0)
            OR coalesce(l.qualifying, 0) <> coalesce(d.qualifying, 0)
        """,
    ),
)


@dataclass
class CheckResult:
    name: str
    description: str
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


async def verify(database: Database) -> Report:
    """Run every check in one REPEATABLE READ snapshot, so they see one consistent ledger."""
    async with database.single() as db:
        await db.execute("ANALYZE " + ", ".join(LEDGER_TABLES))
    results = []
    async with database.transaction() as tx:
        await tx.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        # whole-table joins: hashed, never a loop of probes planned on a guess
        await tx.execute("SET LOCAL enable_nestloop = off")
        for check in CHECKS:
            rows = await tx.fetch(f"SELECT * FROM ({check.sql}) AS offending LIMIT {SAMPLE}")
            results.append(CheckResult(check.name, check.description, [dict(r) for r in rows]))
        await tx.execute("SET LOCAL enable_nestloop = on")
        for feature in feature_checks():
            results.append(
                CheckResult(feature.name, feature.description, await feature.run(tx, SAMPLE))
            )
    return Report(results)
