"""The service under test, driven only through its public interfaces: the `points-ledger`
command (program create, keys create, import, verify, serve) and the HTTP API.

Nothing here imports `app` or touches the service's tables or SQL functions: the engine and the
schema are being rewritten, and the bench must measure the new ones unchanged.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from bench import processes

ROOT = Path(__file__).resolve().parent.parent
CACHE_TTL_SECONDS = 5  # POINTS_LEDGER_CACHE_TTL_SECONDS' default: other workers see changes then


class CommandFailed(RuntimeError):
    pass


# 16 connections per worker and no overflow: exactly the bare app's pool (asyncpg, 16 per
# worker). With the default 20 + 10, a worker past its pool opens and closes a connection per
# request (a py-spy profile showed asyncpg connecting during the load), and two workers beside
# pgbench's 32 clients can pass max_connections=100.
POOL_SIZE = 16


def _env(url: str) -> dict[str, str]:
    return {
        "POINTS_LEDGER_DATABASE_URL": url,
        "POINTS_LEDGER_LOG_LEVEL": "warning",
        "POINTS_LEDGER_POOL_SIZE": str(POOL_SIZE),
    }


def points_ledger(url: str, *args: str) -> str:
    """Run `points-ledger ARGS` against the database at `url`; its stdout, or CommandFailed
    with its output."""
    done = subprocess.run(
        [sys.executable, "-m", "app", *args],
        cwd=ROOT,
        env={**os.environ, **_env(url)},
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise CommandFailed(
            f"points-ledger {' '.join(args)} exited {done.returncode}:\n"
            f"{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
        )
    return done.stdout


def create_program(url: str, slug: str) -> str:
    """A new program (migrating the database first); its admin key."""
    out = points_ledger(url, "program", "create", "--slug", slug, "--name", slug, "--json")
    return str(json.loads(out)["api_key"])


def create_key(url: str, slug: str, scopes: str) -> str:
    out = points_ledger(url, "keys", "create", "--program", slug, "--scopes", scopes, "--json")
    return str(json.loads(out)["api_key"])


def write_csv(path: Path, rows: Iterable[tuple[str, str, str, int]]) -> None:
    """An import file of explicit-points events: (id, type, member, points)."""
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "type", "member", "points"])
        writer.writerows(rows)


def import_csv(url: str, path: Path, slug: str) -> float:
    """`points-ledger import PATH --program SLUG`; its wall time in seconds. Any rejected row
    fails the bench: the seed must be whole for the scenarios to mean anything."""
    started = time.monotonic()
    out = points_ledger(url, "import", str(path), "--program", slug, "--batch-size", "1000")
    elapsed = time.monotonic() - started
    if "rejected 0" not in out:
        raise CommandFailed(f"import of {path} rejected rows:\n{out}")
    return elapsed


def verify(url: str) -> float:
    """`points-ledger verify`; its wall time. A non-zero exit stops the bench loudly."""
    started = time.monotonic()
    points_ledger(url, "verify")
    return time.monotonic() - started


def start(url: str, workers: int, log_dir: Path) -> processes.Server:
    """`python -m app serve --workers W`, as in production (uvicorn, uvloop, httptools; the
    serve command migrates first). Cache settings are the production defaults; the pool is
    POOL_SIZE."""
    port = processes.free_port()
    server = processes.start(
        "service",
        [sys.executable, "-m", "app", "serve", "--port", str(port), "--workers", str(workers)],
        env=_env(url),
        cwd=ROOT,
        port=port,
        workers=workers,
        log_dir=log_dir,
    )
    server.wait_ready("/healthz")
    return server


def http(
    base: str, method: str, path: str, key: str, body: Any = None, idempotency_key: str = ""
) -> Any:
    """One admin call over HTTP; its JSON answer (an HTTPError on a non-2xx)."""
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    if idempotency_key:
        headers["Idempotency-Key"] = idempotency_key
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(base + path, data=data, headers=headers, method=method)
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def import_parallel(url: str, paths: list[Path], slug: str) -> float:
    """Several `points-ledger import` processes at once (tills syncing together); the wall time
    until the last one ends."""
    started = time.monotonic()
    children = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "app",
                "import",
                str(path),
                "--program",
                slug,
                "--batch-size",
                "1000",
            ],
            cwd=ROOT,
            env={**os.environ, **_env(url)},
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,  # a progress bar
            text=True,
        )
        for path in paths
    ]
    outputs = [child.communicate()[0] for child in children]
    elapsed = time.monotonic() - started
    for child, out in zip(children, outputs, strict=True):
        if child.returncode != 0 or "rejected 0" not in out:
            raise CommandFailed(f"parallel import failed ({child.returncode}):\n{out}")
    return elapsed
