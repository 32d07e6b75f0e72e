"""What the load clients saw (the history), and checking it against what the ledger holds.

After Jepsen: every logical write is an `Op` with its own idempotency key; every HTTP attempt
to deliver it is an `Attempt` whose outcome is acknowledged (2xx), a definite failure (4xx), or
unknown (timeout, connection error, 5xx: the write may or may not have happened). The checker
then reads the ledger in one snapshot and holds each op to what its outcomes allow:

* acknowledged: posted exactly once, as the transaction every acknowledgement named;
* definite failure (every attempt a 4xx): posted nothing;
* unknown: posted at most once; whether it did is read from the ledger, not guessed;

and every posting found must match its op (kind, member, points, reversed transaction), so
that member balances can be recomputed from the ops alone and compared with the database and
the API.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any, Literal

import asyncpg
import httpx

Kind = Literal["earn", "redeem", "reverse"]

PATHS = {"earn": "/v1/earn", "redeem": "/v1/redeem"}


@dataclass
class Attempt:
    status: int | None  # None: no answer (timeout, connection refused or reset)
    body: Any = None
    replayed: bool = False
    error: str | None = None

    @property
    def acknowledged(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    @property
    def definite_failure(self) -> bool:
        return self.status is not None and 400 <= self.status < 500

    @property
    def unknown(self) -> bool:
        return not (self.acknowledged or self.definite_failure)

    @property
    def code(self) -> str | None:
        if self.definite_failure and isinstance(self.body, dict):
            return str(self.body.get("code"))
        return None

    @property
    def transaction_id(self) -> int | None:
        if not self.acknowledged or not isinstance(self.body, dict):
            return None
        found = self.body.get("transaction_id", self.body.get("id"))
        return int(found) if found is not None else None


@dataclass
class Op:
    key: str
    kind: Kind
    member: str
    points: int  # earn/redeem: points moved; reverse: the member's points the original moved
    target: int | None = None  # reverse: id of the transaction to reverse
    attempts: list[Attempt] = field(default_factory=list)

    @property
    def member_delta(self) -> int:
        """How this op moves the member's points if it is posted."""
        return {"earn": self.points, "redeem": -self.points, "reverse": -self.points}[self.kind]

    @property
    def acknowledged(self) -> bool:
        return any(a.acknowledged for a in self.attempts)

    @property
    def definite_failure(self) -> bool:
        return bool(self.attempts) and all(a.definite_failure for a in self.attempts)

    @property
    def outcome(self) -> str:
        if self.acknowledged:
            return "acknowledged"
        return "failed" if self.definite_failure else "unknown"

    def request(self) -> tuple[str, dict[str, Any]]:
        if self.kind == "reverse":
            return f"/v1/transactions/{self.target}/reverse", {"reason": "bank test"}
        return PATHS[self.kind], {"member": self.member, "points": self.points}


async def attempt(client: httpx.AsyncClient, op: Op, api_key: str, wait: float) -> Attempt:
    """Send `op` once with its idempotency key and record what came back."""
    path, body = op.request()
    headers = {"Authorization": f"Bearer {api_key}", "Idempotency-Key": op.key}
    try:
        response = await client.post(path, json=body, headers=headers, timeout=wait)
    except httpx.TransportError as exc:  # timeouts, refused and reset connections
        result = Attempt(None, error=type(exc).__name__)
    else:
        try:
            payload = response.json()
        except ValueError:
            payload = response.text
        result = Attempt(
            response.status_code,
            payload,
            replayed=response.headers.get("Idempotent-Replayed") == "true",
        )
    op.attempts.append(result)
    return result


@dataclass
class Posting:
    id: int
    kind: str
    member: str | None
    member_delta: int
    reverses_id: int | None
    key: str | None


@dataclass
class Ledger:
    """One REPEATABLE READ snapshot of a program's part of the ledger."""

    postings: list[Posting]
    available: dict[str, int]  # member -> stored balance of its available account
    member_totals: dict[str, int]  # member -> stored balances of all its accounts
    program_sums: dict[str, int]  # program account kind -> sum of its entries

    def by_key(self) -> dict[str | None, list[Posting]]:
        found: dict[str | None, list[Posting]] = defaultdict(list)
        for posting in self.postings:
            found[posting.key].append(posting)
        return found


async def read_ledger(conn: asyncpg.Connection, program_id: int) -> Ledger:
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        rows = await conn.fetch(
            """
            SELECT t.id, t.kind, m.external_id AS member, t.reverses_id, t.idempotency_key,
                   coalesce((SELECT sum(e.amount) FROM entries e
                              WHERE e.transaction_id = t.id AND e.member_id IS NOT NULL), 0)
                       AS member_delta
              FROM transactions t LEFT JOIN members m ON m.id = t.member_id
             WHERE t.program_id = $1
             ORDER BY t.id
            """,
            program_id,
        )
        balances = await conn.fetch(
            """
            SELECT m.external_id, a.kind, a.balance
              FROM accounts a JOIN members m ON m.id = a.member_id
             WHERE a.program_id = $1 AND a.asset = 'points'
            """,
            program_id,
        )
        sums = await conn.fetch(
            """
            SELECT a.kind, coalesce(sum(e.amount), 0) AS total
              FROM accounts a LEFT JOIN entries e ON e.account_id = a.id
             WHERE a.program_id = $1 AND a.member_id IS NULL AND a.asset = 'points'
             GROUP BY a.kind
            """,
            program_id,
        )
    available: dict[str, int] = {}
    totals: dict[str, int] = defaultdict(int)
    for row in balances:
        totals[row["external_id"]] += row["balance"]
        if row["kind"] == "available":
            available[row["external_id"]] = row["balance"]
    return Ledger(
        postings=[
            Posting(
                r["id"],
                r["kind"],
                r["member"],
                int(r["member_delta"]),
                r["reverses_id"],
                r["idempotency_key"],
            )
            for r in rows
        ],
        available=available,
        member_totals=dict(totals),
        program_sums={r["kind"]: int(r["total"]) for r in sums},
    )


async def wait_until_quiet(
    conn: asyncpg.Connection, settle: float = 0.5, limit: float = 30
) -> None:
    """Wait until no other session of this database runs a statement for `settle` seconds.

    Requests that clients gave up on may still be running in the server; the checks must see
    the ledger after the last of them.
    """
    deadline = time.monotonic() + limit
    quiet_since: float | None = None
    while time.monotonic() < deadline:
        busy = await conn.fetchval(
            """
            SELECT count(*) FROM pg_stat_activity
             WHERE datname = current_database() AND pid <> pg_backend_pid()
               AND state NOT IN ('idle')
            """
        )
        now = time.monotonic()
        if busy:
            quiet_since = None
        elif quiet_since is None:
            quiet_since = now
        elif now - quiet_since >= settle:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the database did not become quiet")


@dataclass
class Verdict:
    """What the checker concluded: problems found, and the balances the history implies."""

    problems: list[str]
    expected_available: dict[str, int]
    outcomes: Counter[str]
    posted_unknown: int
    earned: int  # points of posted earns, less their posted reversals
    redeemed: int  # points of posted redeems, less their posted reversals


def check(ops: list[Op], ledger: Ledger, members: list[str]) -> Verdict:
    """Hold every op to what its outcomes allow, and recompute balances from posted ops."""
    problems: list[str] = []
    by_key = ledger.by_key()
    known_keys = {op.key for op in ops}
    strangers = [p for p in ledger.postings if p.key not in known_keys]
    if strangers:
        problems.append(f"postings no client sent: {strangers[:5]}")

    expected = dict.fromkeys(members, 0)
    outcomes: Counter[str] = Counter()
    posted_unknown = 0
    earned = redeemed = 0
    kind_of_target: dict[int, str] = {}
    for op in ops:
        for a in op.attempts:
            if a.transaction_id is not None and op.kind != "reverse":
                kind_of_target[a.transaction_id] = op.kind

    for op in ops:
        outcomes[f"{op.kind}:{op.outcome}"] += 1
        postings = by_key.get(op.key, [])
        if len(postings) > 1:
            problems.append(f"{op.key} ({op.kind}, {op.outcome}) posted {len(postings)} times")
            continue
        acknowledged_ids = {a.transaction_id for a in op.attempts if a.acknowledged}
        fresh = [a for a in op.attempts if a.acknowledged and not a.replayed]
        if len(fresh) > 1:
            problems.append(f"{op.key}: {len(fresh)} acknowledgements not marked as replays")
        if op.acknowledged:
            if not postings:
                problems.append(f"{op.key} ({op.kind}) acknowledged but not in the ledger")
                continue
            if acknowledged_ids != {postings[0].id}:
                problems.append(
                    f"{op.key}: acknowledged as {acknowledged_ids}, posted as {postings[0].id}"
                )
        elif op.definite_failure:
            if postings:
                problems.append(f"{op.key} ({op.kind}) failed {op.attempts} but was posted")
            continue
        elif postings:
            posted_unknown += 1
        if not postings:
            continue
        posting = postings[0]
        want_kind = op.kind
        if (
            posting.kind != want_kind
            or posting.member != op.member
            or posting.member_delta != op.member_delta
            or (op.kind == "reverse" and posting.reverses_id != op.target)
        ):
            problems.append(f"{op.key}: posted {posting} for {op}")
            continue
        expected[op.member] += op.member_delta
        if op.kind == "earn":
            earned += op.points
        elif op.kind == "redeem":
            redeemed += op.points
        elif kind_of_target.get(op.target or 0) == "earn":
            earned -= op.points  # the reversed earn had moved +points
        else:
            redeemed += op.points  # the reversed redeem had moved -points: they come back
    return Verdict(problems, expected, outcomes, posted_unknown, earned, redeemed)
