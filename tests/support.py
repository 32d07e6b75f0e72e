"""Helpers shared by the tests: programs with keys, requests, a live server, the CLI."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from sqlalchemy.engine import make_url

from app.db import Database
from app.programs import service as program_service

ROOT = Path(__file__).resolve().parent.parent
CLI = [sys.executable, "-m", "app"]


def libpq_url(url: str) -> str:
    """A plain libpq URL (what asyncpg.connect and psql take) from any SQLAlchemy URL."""
    parsed = make_url(url).set(drivername="postgresql")
    return parsed.render_as_string(hide_password=False)


def new_key() -> str:
    return f"test-{uuid.uuid4().hex}"


@dataclass
class TestProgram:
    __test__ = False  # a fixture value, not a test class

    id: int
    slug: str
    api_key: str
    database: Database
    _scoped_keys: dict[str, str] = field(default_factory=dict)

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"}

    def write_headers(self, key: str | None = None, api_key: str | None = None) -> dict[str, str]:
        return {
            "Authorization": f"Bearer {api_key or self.api_key}",
            "Idempotency-Key": key or new_key(),
        }

    async def key_with(self, *scopes: str) -> str:
        """An API key of this program carrying exactly `scopes`."""
        label = ",".join(sorted(scopes))
        if label not in self._scoped_keys:
            async with self.database.transaction() as session:
                created = await program_service.create_key(
                    session, program_slug=self.slug, scopes=scopes
                )
            self._scoped_keys[label] = created.api_key
        return self._scoped_keys[label]


async def earn(
    client: httpx.AsyncClient, program: TestProgram, member: str, points: int, **extra: Any
) -> httpx.Response:
    return await client.post(
        "/v1/earn",
        json={"member": member, "points": points, **extra},
        headers=program.write_headers(),
    )


async def redeem(
    client: httpx.AsyncClient, program: TestProgram, member: str, points: int, **extra: Any
) -> httpx.Response:
    return await client.post(
        "/v1/redeem",
        json={"member": member, "points": points, **extra},
        headers=program.write_headers(),
    )


async def available(client: httpx.AsyncClient, program: TestProgram, member: str) -> int:
    response = await client.get(f"/v1/members/{member}", headers=program.headers)
    assert response.status_code == 200, response.text
    value: int = response.json()["balance"]["available"]
    return value


async def move_clock(sql: asyncpg.Connection, program_id: int, statement: str, *args: Any) -> None:
    """Time passes, by hand: `statement` moves due dates of the program into the past (a pending
    lot's release_at, a hold's or a lot's expires_at). Its members are then marked due, as the
    write that set those dates would have done (`members.due_at` is the earliest work of the
    member; `verify` checks it), so the next read or the worker finds the work."""
    async with sql.transaction():
        await sql.execute(statement, *args)
        await sql.execute(
            "UPDATE members SET due_at = now() - interval '1 second' WHERE program_id = $1",
            program_id,
        )


async def run_cli(database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run `points-ledger ARGS` against the test database, as a user would."""
    env = {**os.environ, "POINTS_LEDGER_DATABASE_URL": database_url, "NO_COLOR": "1"}
    process = await asyncio.create_subprocess_exec(
        *CLI,
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
        cwd=ROOT,
    )
    out, err = await process.communicate()
    return subprocess.CompletedProcess(
        [*CLI, *args], process.returncode or 0, out.decode(), err.decode()
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class LiveServer:
    process: subprocess.Popen[bytes]
    base_url: str
    database_url: str
    log_path: Path

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


def start_live_server(database_url: str, *extra_env: tuple[str, str]) -> LiveServer:
    port = free_port()
    log_path = Path(os.environ.get("TMPDIR", "/tmp")) / f"points-ledger-live-{port}.log"
    env = {
        **os.environ,
        "POINTS_LEDGER_DATABASE_URL": database_url,
        "POINTS_LEDGER_POOL_SIZE": "40",
        "POINTS_LEDGER_POOL_IDLE_SECONDS": "1",
        "POINTS_LEDGER_CACHE_TTL_SECONDS": "0.5",
        **dict(extra_env),
    }
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [*CLI, "serve", "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    base_url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited: {log_path.read_text()}")
        try:
            if httpx.get(base_url + "/readyz", timeout=1).status_code == 200:
                return LiveServer(process, base_url, database_url, log_path)
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    process.kill()
    raise RuntimeError(f"server did not become ready: {log_path.read_text()}")
