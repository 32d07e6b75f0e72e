"""The shared baselines (../shared/baseline): the least work an earn can do, on the same
PostgreSQL and machine, measured in the same run as the service.

They are used as they are, never copied into the repository and never calling the service's
code: the bare FastAPI + asyncpg app (`app.py`, driven by its own `earn.lua`) over HTTP, and
the one-statement earn (`earn_cte.sql`) and the set-based batch of 100 (`earn_batch.sql`)
under pgbench. See their README for how they are meant to be run; this module does just that.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from bench import loadgen, postgres, processes

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DIR = ROOT.parent / "shared" / "baseline"  # the repo lives at /work/main
DIR_ENV = "POINTS_LEDGER_BASELINE_DIR"
FILES = ("README.md", "schema.sql", "earn_cte.sql", "earn_batch.sql", "app.py", "earn.lua")


def locate(option: str | None) -> Path:
    """--baseline-dir, else $POINTS_LEDGER_BASELINE_DIR, else ../shared/baseline from the repo
    root; every baseline file must be there."""
    directory = Path(option or os.environ.get(DIR_ENV) or DEFAULT_DIR).resolve()
    missing = [name for name in FILES if not (directory / name).is_file()]
    if missing:
        raise SystemExit(
            f"baseline files missing in {directory}: {', '.join(missing)} "
            f"(set --baseline-dir or {DIR_ENV})"
        )
    return directory


def create_database(server: postgres.Server, directory: Path) -> str:
    """A database of the baseline's own (not the service's) with its schema and 100,000
    accounts; analyzed, like the service's after its seed."""
    url = postgres.create_database(server, "pl_bench_baseline")
    postgres.run_script(url, (directory / "schema.sql").read_text())
    postgres.analyze(url)
    return url


def start_app(directory: Path, url: str, workers: int, log_dir: Path) -> processes.Server:
    """The bare app with the service's worker count and HTTP stack (uvicorn, uvloop,
    httptools), in the service's venv."""
    port = processes.free_port()
    server = processes.start(
        "bare-app",
        [
            sys.executable,
            "-m",
            "uvicorn",
            "app:app",
            "--app-dir",
            str(directory),
            "--port",
            str(port),
            "--workers",
            str(workers),
            "--loop",
            "uvloop",
            "--http",
            "httptools",
            "--no-access-log",
            "--log-level",
            "warning",
        ],
        env={"PROBE_DSN": url},
        cwd=directory,
        port=port,
        workers=workers,
        log_dir=log_dir,
    )
    server.wait_ready("/earn")  # a GET gets 405 once a worker answers
    return server


def bare_app_load(
    app: processes.Server, directory: Path, *, connections: int, seconds: float
) -> loadgen.WrkResult:
    return loadgen.wrk(
        app.base, directory / "earn.lua", connections=connections, seconds=seconds, env={}
    )


def pgbench_earn(url: str, directory: Path, seconds: int) -> postgres.PgbenchResult:
    """earn_cte.sql with as many clients as the service gets connections (32)."""
    return postgres.pgbench(url, directory / "earn_cte.sql", clients=32, threads=2, seconds=seconds)


def pgbench_batch(url: str, directory: Path, seconds: int) -> postgres.PgbenchResult:
    """earn_batch.sql, 8 clients; its events/s are tps x 100."""
    return postgres.pgbench(
        url, directory / "earn_batch.sql", clients=8, threads=2, seconds=seconds
    )
