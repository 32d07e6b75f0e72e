"""Bank test, after Jepsen's bank workload: money is neither created nor lost under load.

20 members, 32 concurrent clients for POINTS_LEDGER_BANK_SECONDS (default 20) seconds against
a real `points-ledger serve` process over HTTP. Each client loops: a random earn, redeem, or
reversal of a transaction some client saw acknowledged (now and then a reversal of a reversal,
which must be refused), each with a fresh Idempotency-Key, delivered in one of these ways:

* plainly, once;
* twice at the same moment with the same key (a checkout that double-submits);
* with an impatient client timeout (a few ms), then retried with the same key, as a checkout
  does after a timeout;
* with an impatient timeout and never retried (the outcome stays unknown);
* once, then replayed with the same key after the answer came (must return the same answer).

Every attempt's outcome is recorded (2xx acknowledged, 4xx definite failure, no answer or 5xx
unknown). Afterwards, from one database snapshot and from the API (see tests/load/history.py):
every acknowledged write is in the ledger exactly once, as the transaction it was acknowledged
as; no write is there twice; no definite failure posted anything; every 4xx is one the
operation may give; every posting matches its request; each member's balance (database and
API) equals its posted earns - redeems -/+ reversals, the unknown outcomes resolved by what the
ledger holds for their keys; no balance is negative; the program accounts' entry sums equal
what the members gained. Then every balance grows far past any redeem, every refused request
is replayed under its key, and each must answer the same refusal and post nothing (declined
requests keep their answer). Last, `points-ledger verify` exits 0.

The run prints a summary (and every failure message starts with it) including the random seed;
POINTS_LEDGER_BANK_SEED=<seed> replays the same choices (the interleaving will differ).
"""

from __future__ import annotations

import asyncio
import os
import random
import time
import uuid
from collections import Counter

import asyncpg
import httpx
import pytest

from tests.load.history import (
    Attempt,
    Kind,
    Ledger,
    Op,
    attempt,
    check,
    read_ledger,
    wait_until_quiet,
)
from tests.support import LiveServer, TestProgram, libpq_url, run_cli

pytestmark = pytest.mark.load

DURATION = float(os.environ.get("POINTS_LEDGER_BANK_SECONDS", "20"))
MEMBERS = [f"bank-{i:02d}" for i in range(20)]
CLIENTS = 32
SEED_POINTS = 500
PATIENT = 30.0  # seconds: a client that waits for its answer
IMPATIENT = (0.0005, 0.015)  # seconds: a client that gives up almost at once

# The 4xx each kind of write may legitimately answer in this workload.
ALLOWED_REFUSALS = {
    "earn": set(),
    "redeem": {"insufficient_points"},
    "reverse": {"already_reversed", "insufficient_points", "not_reversible"},
}
DELIVERIES = (
    ("plain", 0.60),
    ("duplicate", 0.12),
    ("impatient_retry", 0.12),
    ("abandon", 0.06),
    ("replay", 0.10),
)


class Bank:
    def __init__(self, client: httpx.AsyncClient, api_key: str, rng: random.Random) -> None:
        self.client = client
        self.api_key = api_key
        self.rng = rng
        self.ops: list[Op] = []
        self.reversible: list[tuple[int, Op]] = []  # acknowledged earns and redeems
        self.reversals: list[tuple[int, Op]] = []  # acknowledged reversals
        self.problems: list[str] = []
        self.deliveries: Counter[str] = Counter()

    def new_op(self, kind: Kind, member: str, points: int, target: int | None = None) -> Op:
        op = Op(f"bank-{uuid.uuid4().hex}", kind, member, points, target)
        self.ops.append(op)
        return op

    def random_op(self) -> Op:
        rng = self.rng
        roll = rng.random()
        if roll < 0.15 and self.reversible:
            if self.reversals and rng.random() < 0.1:
                target, reversal = rng.choice(self.reversals[-50:])
                return self.new_op("reverse", reversal.member, 0, target)  # not reversible
            target, original = rng.choice(self.reversible[-200:])
            return self.new_op("reverse", original.member, original.member_delta, target)
        member = rng.choice(MEMBERS)
        if roll < 0.57:
            return self.new_op("earn", member, rng.randint(1, 100))
        return self.new_op("redeem", member, rng.randint(1, 150))

    async def send(self, op: Op, wait: float) -> Attempt:
        return await attempt(self.client, op, self.api_key, wait)

    async def deliver(self, op: Op, how: str) -> None:
        self.deliveries[how] += 1
        rng = self.rng
        if how == "duplicate":
            await asyncio.gather(self.send(op, PATIENT), self.send(op, PATIENT))
        elif how == "impatient_retry":
            first = await self.send(op, rng.uniform(*IMPATIENT))
            if first.unknown:
                await asyncio.sleep(rng.uniform(0, 0.05))
                await self.send(op, PATIENT)
        elif how == "abandon":
            await self.send(op, rng.uniform(*IMPATIENT))
        elif how == "replay":
            first = await self.send(op, PATIENT)
            if first.acknowledged:
                again = await self.send(op, PATIENT)
                if (again.status, again.body, again.replayed) != (first.status, first.body, True):
                    self.problems.append(f"{op.key}: replay {again} differs from {first}")
        else:
            await self.send(op, PATIENT)
        self.learn(op)

    def learn(self, op: Op) -> None:
        """Note what was acknowledged (for later reversals) and check every answer's shape."""
        for a in op.attempts:
            if a.status is not None and a.status >= 500:
                self.problems.append(f"{op.key} ({op.kind}): server error {a.status} {a.body}")
            if a.definite_failure and a.code not in ALLOWED_REFUSALS[op.kind]:
                self.problems.append(f"{op.key} ({op.kind}): unexpected {a.status} {a.body}")
            if a.acknowledged and op.kind != "reverse":
                available = a.body["balance"]["available"]
                if available < 0:
                    self.problems.append(f"{op.key}: negative balance {available} acknowledged")
        acknowledged = [a.transaction_id for a in op.attempts if a.transaction_id is not None]
        if acknowledged:
            pool = self.reversals if op.kind == "reverse" else self.reversible
            pool.append((acknowledged[0], op))

    async def client_loop(self, deadline: float) -> None:
        ways = [how for how, _ in DELIVERIES]
        weights = [weight for _, weight in DELIVERIES]
        while time.monotonic() < deadline:
            op = self.random_op()
            await self.deliver(op, self.rng.choices(ways, weights)[0])


async def test_bank(live_server: LiveServer, program: TestProgram, database_url: str) -> None:
    seed = int(os.environ.get("POINTS_LEDGER_BANK_SEED", str(random.randrange(2**32))))
    limits = httpx.Limits(max_connections=2 * CLIENTS, max_keepalive_connections=2 * CLIENTS)
    async with httpx.AsyncClient(base_url=live_server.base_url, limits=limits) as client:
        bank = Bank(client, program.api_key, random.Random(seed))
        for member in MEMBERS:
            op = bank.new_op("earn", member, SEED_POINTS)
            await bank.deliver(op, "plain")
            assert op.acknowledged, op.attempts

        deadline = time.monotonic() + DURATION
        await asyncio.gather(*(bank.client_loop(deadline) for _ in range(CLIENTS)))

        conn = await asyncpg.connect(libpq_url(database_url))
        try:
            await wait_until_quiet(conn)  # requests given up on may still be running
            ledger = await read_ledger(conn, program.id)
        finally:
            await conn.close()
        verdict = check(bank.ops, ledger, MEMBERS)

        api_available = {}
        for member in MEMBERS:
            response = await client.get(f"/v1/members/{member}", headers=program.headers)
            assert response.status_code == 200, response.text
            api_available[member] = response.json()["balance"]["available"]

    attempts = [a for o in bank.ops for a in o.attempts]
    summary = (
        f"seed={seed} ops={len(bank.ops)} attempts={len(attempts)} "
        f"unanswered_attempts={sum(a.unknown for a in attempts)} "
        f"outcomes={dict(sorted(verdict.outcomes.items()))} "
        f"unknown_but_posted={verdict.posted_unknown} deliveries={dict(bank.deliveries)}"
    )
    print(summary)
    assert not bank.problems, f"{summary}\n" + "\n".join(bank.problems[:20])
    assert not verdict.problems, f"{summary}\n" + "\n".join(verdict.problems[:20])

    assert ledger.available == verdict.expected_available, summary
    assert api_available == verdict.expected_available, summary
    assert all(balance >= 0 for balance in ledger.member_totals.values()), ledger.member_totals

    # Conservation: what members hold came out of issuance and went into redemption.
    issued = -ledger.program_sums.get("issuance", 0)
    spent = ledger.program_sums.get("redemption", 0)
    assert issued == verdict.earned, summary
    assert spent == verdict.redeemed, summary
    assert sum(ledger.available.values()) == issued - spent, summary
    assert sum(ledger.member_totals.values()) + sum(ledger.program_sums.values()) == 0, summary

    # The workload did what it claims: every kind of write and outcome happened.
    outcomes = verdict.outcomes
    for kind in ("earn", "redeem", "reverse"):
        assert outcomes[f"{kind}:acknowledged"] > 0, summary
    assert outcomes["redeem:failed"] + outcomes["reverse:failed"] > 0, summary
    assert sum(n for name, n in outcomes.items() if name.endswith(":unknown")) > 0, summary
    impatient = [o for o in bank.ops if o.attempts and o.attempts[0].unknown]
    assert any(o.acknowledged for o in impatient), "no timed-out request was retried to an ack"

    await replay_the_declined(bank, live_server, program, database_url, ledger, summary)

    verify = await run_cli(database_url, "verify")
    assert verify.returncode == 0, verify.stdout + verify.stderr


GROWTH = 100_000  # points each member earns after the run: more than any redeem could need


async def replay_the_declined(
    bank: Bank,
    live_server: LiveServer,
    program: TestProgram,
    database_url: str,
    before: Ledger,
    summary: str,
) -> None:
    """Declined requests keep their answer. Every member's balance grows far past any redeem,
    then every request that was refused (a 4xx) is replayed under its key: each answers the
    same refusal, marked replayed, and nothing posts -- the ledger holds the growth alone."""
    declined = [
        (op, first) for op in bank.ops for first in op.attempts[:1] if first.definite_failure
    ]
    assert any(op.kind == "redeem" for op, _ in declined), summary
    limits = httpx.Limits(max_connections=CLIENTS, max_keepalive_connections=CLIENTS)
    async with httpx.AsyncClient(base_url=live_server.base_url, limits=limits) as client:
        growth = Bank(client, program.api_key, random.Random(0))
        for member in MEMBERS:
            op = growth.new_op("earn", member, GROWTH)
            await growth.deliver(op, "plain")
            assert op.acknowledged, op.attempts
        gate = asyncio.Semaphore(CLIENTS)

        async def replay(op: Op) -> Attempt:
            async with gate:
                return await attempt(client, op, program.api_key, PATIENT)

        again = await asyncio.gather(*(replay(op) for op, _ in declined))
    differ = [
        f"{op.key} ({op.kind}): {first.status} {first.body} then {later}"
        for (op, first), later in zip(declined, again, strict=True)
        if (later.status, later.body, later.replayed) != (first.status, first.body, True)
    ]
    assert not differ, f"{summary}\n" + "\n".join(differ[:20])
    conn = await asyncpg.connect(libpq_url(database_url))
    try:
        await wait_until_quiet(conn)
        after = await read_ledger(conn, program.id)
    finally:
        await conn.close()
    assert len(after.postings) == len(before.postings) + len(MEMBERS), summary
    assert after.available == {m: before.available[m] + GROWTH for m in MEMBERS}, summary
