"""Crash test: SIGKILL the service, then PostgreSQL, then both, in the middle of load.

The test runs on a PostgreSQL of its own (tests/load/postgres.py: embedded, in a temporary
directory, never the shared server), with its own database built by `alembic upgrade head`, and
`points-ledger serve` as a subprocess on a fixed port over the server's unix socket.

16 clients, each owning one member and so knowing its exact balance, loop over earns, redeems
(never more than the member has) and reversals of their own redeems, each write with a fresh
Idempotency-Key and retried with that same key, with backoff, until acknowledged: no write in
this workload may be refused. Meanwhile, every POINTS_LEDGER_CRASH_PHASE_SECONDS (default 3):

1. the service is SIGKILLed mid-load and started again;
2. PostgreSQL's postmaster and all its backends are SIGKILLed (no shutdown checkpoint) and
   started again: crash recovery; the running service must reconnect by itself;
3. both are SIGKILLed at once, then PostgreSQL and the service are started again.

Then: every write was acknowledged; every key is in the ledger exactly once, as the transaction
it was acknowledged as, matching its request; nothing is half-written (every transaction has
balanced entries and every idempotency key its stored response: `points-ledger verify` checks
that and more, and exits 0); every member account's balance equals the fold of its entries and
the balance its client expects; and the faults did hit requests in flight.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import httpx
import pytest

from app import migrate
from app.config import Settings
from app.db import Database, to_async_url
from app.programs import service as program_service
from tests.load.history import Op, attempt, check, read_ledger, wait_until_quiet
from tests.load.postgres import DedicatedPostgres
from tests.support import CLI, ROOT, free_port, libpq_url, run_cli

pytestmark = pytest.mark.load

PHASE = float(os.environ.get("POINTS_LEDGER_CRASH_PHASE_SECONDS", "3"))
CLIENTS = 16
ATTEMPT_WAIT = 5.0  # seconds a client waits for one answer
OP_DEADLINE = 60.0  # seconds a client keeps retrying one write before calling it lost


class Service:
    """`points-ledger serve` on a fixed port, to be killed and started again."""

    def __init__(self, database_url: str, port: int, log_path: Path) -> None:
        self.database_url = database_url
        self.port = port
        self.base_url = f"http://127.0.0.1:{port}"
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> float:
        began = time.monotonic()
        env = {
            **os.environ,
            "POINTS_LEDGER_DATABASE_URL": self.database_url,
            "POINTS_LEDGER_POOL_SIZE": "20",
            "POINTS_LEDGER_CACHE_TTL_SECONDS": "0.5",
        }
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [*CLI, "serve", "--host", "127.0.0.1", "--port", str(self.port)],
                env=env,
                cwd=ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        while time.monotonic() - began < 60:
            if self.process.poll() is not None:
                raise RuntimeError(f"service exited: {self.log_path.read_text()[-3000:]}")
            try:
                if httpx.get(self.base_url + "/readyz", timeout=1).status_code == 200:
                    return time.monotonic() - began
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"service did not become ready: {self.log_path.read_text()[-3000:]}")

    def kill(self) -> None:
        assert self.process is not None and self.process.poll() is None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


@dataclass
class Member:
    """One client's member: only this client writes to it, so it knows the exact balance."""

    name: str
    balance: int = 0
    redeems: list[tuple[int, int]] = field(default_factory=list)  # (transaction id, points)


@dataclass
class Run:
    client: httpx.AsyncClient
    api_key: str
    phase: str = "warm-up"
    stopping: bool = False
    ops: list[Op] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    unanswered: Counter[str] = field(default_factory=Counter)  # phase -> attempts
    server_errors: Counter[str] = field(default_factory=Counter)  # phase -> 5xx answers
    acknowledged: Counter[str] = field(default_factory=Counter)  # phase -> writes

    async def until_acknowledged(self, op: Op) -> int | None:
        """Send `op` with its key until it is acknowledged; the transaction id it was given."""
        self.ops.append(op)
        began = time.monotonic()
        backoff = 0.05
        while time.monotonic() - began < OP_DEADLINE:
            result = await attempt(self.client, op, self.api_key, ATTEMPT_WAIT)
            if result.acknowledged:
                self.acknowledged[self.phase] += 1
                return result.transaction_id
            if result.definite_failure:
                self.problems.append(f"{op.key} ({op.kind}) refused: {result.body}")
                return None
            self.unanswered[self.phase] += 1
            if result.status is not None:
                self.server_errors[self.phase] += 1
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 0.5)
        self.problems.append(f"{op.key} ({op.kind}) never acknowledged: {op.attempts[-3:]}")
        return None

    async def client_loop(self, member: Member, rng: random.Random) -> None:
        while not self.stopping:
            roll = rng.random()
            if roll < 0.15 and member.redeems:
                target, points = member.redeems.pop(rng.randrange(len(member.redeems)))
                op = Op(new_key(), "reverse", member.name, -points, target)
            elif roll < 0.55 and member.balance > 0:
                op = Op(new_key(), "redeem", member.name, rng.randint(1, member.balance))
            else:
                op = Op(new_key(), "earn", member.name, rng.randint(1, 100))
            transaction_id = await self.until_acknowledged(op)
            if transaction_id is None:
                return
            member.balance += op.member_delta
            if op.kind == "redeem":
                member.redeems.append((transaction_id, op.points))


def new_key() -> str:
    return f"crash-{uuid.uuid4().hex}"


@pytest.fixture
def postgres() -> Iterator[DedicatedPostgres]:
    server = DedicatedPostgres()
    try:
        yield server
    finally:
        server.destroy()


async def create_database(postgres: DedicatedPostgres) -> str:
    conn = await asyncpg.connect(postgres.uri())
    try:
        await conn.execute("CREATE DATABASE points_ledger_crash")
    finally:
        await conn.close()
    url = to_async_url(postgres.uri("points_ledger_crash"))
    migrate.upgrade(url)
    return url


async def create_program(url: str) -> tuple[int, str]:
    database = await Database.connect(url, Settings(database_url=None, pool_size=1))
    try:
        async with database.transaction() as tx:
            created = await program_service.create_program(
                tx, slug=f"crash-{uuid.uuid4().hex[:8]}", name="Crash test"
            )
    finally:
        await database.close()
    return created.program_id, created.api_key


async def test_crash_service_and_postgres_mid_load(
    postgres: DedicatedPostgres, tmp_path: Path
) -> None:
    url = await create_database(postgres)
    program_id, api_key = await create_program(url)
    service = Service(url, free_port(), tmp_path / "service.log")
    timings: dict[str, float] = {"service start": await asyncio.to_thread(service.start)}
    members = [Member(f"crash-{i:02d}") for i in range(CLIENTS)]
    seed = random.randrange(2**32)
    limits = httpx.Limits(max_connections=2 * CLIENTS, max_keepalive_connections=2 * CLIENTS)
    try:
        async with httpx.AsyncClient(base_url=service.base_url, limits=limits) as client:
            run = Run(client, api_key)
            clients = asyncio.gather(
                *(run.client_loop(m, random.Random(seed + i)) for i, m in enumerate(members))
            )

            async def fault(name: str) -> None:
                await asyncio.sleep(PHASE)
                run.phase = name
                began = time.monotonic()
                if name in ("service killed", "both killed"):
                    service.kill()
                if name in ("postgres killed", "both killed"):
                    await asyncio.to_thread(postgres.crash)
                    await asyncio.sleep(0.3)
                    await asyncio.to_thread(postgres.start)
                if name in ("service killed", "both killed"):
                    await asyncio.to_thread(service.start)
                timings[name] = time.monotonic() - began

            try:
                for name in ("service killed", "postgres killed", "both killed"):
                    await fault(name)
                await asyncio.sleep(PHASE)
                run.phase = "draining"
            finally:
                run.stopping = True
                await clients

            check_conn = await asyncpg.connect(libpq_url(url))
            try:
                await wait_until_quiet(check_conn)
                ledger = await read_ledger(check_conn, program_id)
                unbalanced = await check_conn.fetch(
                    """
                    SELECT t.id, count(e.leg) AS legs, coalesce(sum(e.amount), 0) AS total
                      FROM transactions t LEFT JOIN entries e ON e.transaction_id = t.id
                     WHERE t.program_id = $1
                     GROUP BY t.id HAVING count(e.leg) < 2 OR coalesce(sum(e.amount), 0) <> 0
                    """,
                    program_id,
                )
                unfolded = await check_conn.fetch(
                    """
                    SELECT a.id, a.balance, coalesce(sum(e.amount), 0) AS folded
                      FROM accounts a LEFT JOIN entries e ON e.account_id = a.id
                     WHERE a.program_id = $1 AND a.member_id IS NOT NULL
                     GROUP BY a.program_id, a.id HAVING a.balance <> coalesce(sum(e.amount), 0)
                    """,
                    program_id,
                )
                keys = await check_conn.fetch(
                    "SELECT key, response IS NOT NULL AS complete FROM idempotency_keys"
                    " WHERE program_id = $1",
                    program_id,
                )
            finally:
                await check_conn.close()
    finally:
        service.stop()

    summary = (
        f"seed={seed} writes={len(run.ops)} "
        f"attempts={sum(len(op.attempts) for op in run.ops)} "
        f"acknowledged={dict(run.acknowledged)} unanswered_attempts={dict(run.unanswered)} "
        f"server_errors={dict(run.server_errors)} "
        f"fault_seconds={ {k: round(v, 1) for k, v in timings.items()} }"
    )
    print(summary)
    assert not run.problems, f"{summary}\n" + "\n".join(run.problems[:20])
    assert all(op.acknowledged for op in run.ops), summary

    verdict = check(run.ops, ledger, [m.name for m in members])
    assert not verdict.problems, f"{summary}\n" + "\n".join(verdict.problems[:20])
    assert len(ledger.postings) == len(run.ops), summary  # one posting per key, no other
    assert {k["key"] for k in keys} == {op.key for op in run.ops}, summary
    assert all(k["complete"] for k in keys), summary
    assert not unbalanced, unbalanced
    assert not unfolded, unfolded
    expected = {m.name: m.balance for m in members}
    assert verdict.expected_available == expected, summary
    assert ledger.available == expected, summary

    # The faults hit requests in flight, and each phase saw writes acknowledged.
    for phase in ("service killed", "postgres killed", "both killed"):
        assert run.unanswered[phase] > 0, summary
        assert run.acknowledged[phase] > 0, summary
    assert len(run.ops) > 100, summary

    verify = await run_cli(url, "verify")
    assert verify.returncode == 0, verify.stdout + verify.stderr
