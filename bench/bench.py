"""points-ledger benchmark: the service beside the shared baselines, on one PostgreSQL.

Run it with `bench/run` (which installs wrk and the project's venv). Each run:
  1. creates a fresh database for the service and one for the baseline (its schema.sql), on
     POINTS_LEDGER_BENCH_SERVER, else the PostgreSQL at 127.0.0.1:5432, else an embedded one;
  2. seeds the service through its public interfaces only: `points-ledger program create`,
     `keys create`, and `points-ledger import` of a CSV that gives each of --members members a
     starting balance (timed: the `import` scenario);
  3. starts `python -m app serve --workers W` and measures the scenarios of
     bench/scenarios.py with wrk (32 connections), alternately with the baselines: the bare app
     (same worker count, started for its own step) under wrk, and pgbench; it runs
     `points-ledger verify` after each of the service's scenarios (and stops if it fails);
  4. at the end of the last run, grows the ledger to 1,000,000 transactions with parallel
     imports and times `points-ledger verify` on it (`verify_1m`).
It prints every scenario beside its baseline, the ratio (median of the per-run ratios), its
target and whether it is met, and the Python CPU per request of the service and the bare app.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path

from bench import baselines, loadgen, postgres, processes, pyspy, report, seed, service
from bench.report import Measurement, Run
from bench.scenarios import BATCH_EVENTS, BY_NAME, round_order, selected

ROOT = Path(__file__).resolve().parent.parent
LEDGER_LUA = loadgen.WRK_DIR / "ledger.lua"
VERIFY_TRANSACTIONS = 1_000_000
WARM_UP_SECONDS = 2


@dataclass
class Bench:
    """What every step of an invocation needs."""

    args: argparse.Namespace
    server: postgres.Server
    baseline_dir: Path
    chosen: set[str]
    work: Path  # temp dir: CSVs, logs, profiles
    loads: list[float] = field(default_factory=list)  # 1-minute load average after each step


@dataclass
class RunState:
    """One run: its databases, keys and processes."""

    number: int
    service_url: str
    baseline_url: str
    admin_key: str = ""
    key: str = ""
    svc: processes.Server | None = None
    figures: Run = field(default_factory=dict)
    posted: int = 0  # transactions the run posted (2xx writes), towards the 1M ledger


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="runs; medians are reported")
    parser.add_argument("--seconds", type=float, default=10, help="wrk/pgbench time per step")
    parser.add_argument("--workers", type=int, default=2, help="service and bare-app workers")
    parser.add_argument("--members", type=int, default=100_000, help="members seeded per run")
    parser.add_argument(
        "--only",
        type=lambda s: [n for n in s.split(",") if n],
        help="comma-separated scenarios (their baselines come along); "
        "verify_1m runs only when named here or when --only is absent",
    )
    parser.add_argument(
        "--baseline-dir",
        help=f"default ${baselines.DIR_ENV} or ../shared/baseline from the repository root",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="py-spy one worker during an extra earn load in run 1",
    )
    parser.add_argument(
        "--allow-non-durable",
        action="store_true",
        help="run even if fsync or synchronous_commit is off (figures invalid)",
    )
    parser.add_argument(
        "--verify-transactions",
        type=int,
        default=VERIFY_TRANSACTIONS,
        help="size of the ledger verify_1m times verify on",
    )
    parser.add_argument("--json", type=Path, help="write every run's figures here")
    args = parser.parse_args()
    if args.runs < 1 or args.seconds <= 0 or args.workers < 1 or args.members < 1:
        parser.error("--runs, --seconds, --workers and --members must be positive")
    return args


def machine(settings: dict[str, str]) -> str:
    mem_kib = int(Path("/proc/meminfo").read_text().split()[1])
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    wrk_version = subprocess.run(["wrk", "-v"], capture_output=True, text=True).stdout
    return (
        f"commit {commit or '?'}; {os.cpu_count()} cores (nproc), {mem_kib / 2**20:.0f} GiB RAM, "
        f"{platform.python_implementation()} {platform.python_version()}, "
        f"{wrk_version.split(' [')[0].strip() or 'wrk'}\n"
        "PostgreSQL " + ", ".join(f"{k}={v}" for k, v in settings.items())
    )


def check_durability(settings: dict[str, str], allow: bool) -> None:
    problems = postgres.durability_problems(settings)
    if not problems:
        return
    banner = "!" * 78
    message = (
        f"{banner}\nDURABILITY IS OFF on this server ({', '.join(problems)}): commits do "
        f"not wait for the disk, so no figure compares with production.\n{banner}"
    )
    if not allow:
        raise SystemExit(message + "\nrefusing to run (--allow-non-durable to run anyway)")
    print(message, flush=True)


def log(state: RunState, name: str, text: str) -> None:
    print(f"  run {state.number} {name:<14} {text}", flush=True)


def prepare(bench: Bench, state: RunState) -> None:
    """The program, its keys, and every member with a starting balance (timed: `import`)."""
    state.admin_key, state.key = seed.program(state.service_url)
    count = bench.args.members
    seconds = seed.members(state.service_url, bench.work, count)
    state.posted += count
    state.figures["import"] = Measurement(seconds, requests=count)
    log(state, "import", f"{count:,} rows in {seconds:.1f} s ({count / seconds:,.0f} rows/s)")


def timed_wrk(
    server: processes.Server, script: Path, connections: int, seconds: float, env: dict[str, str]
) -> tuple[loadgen.WrkResult, float]:
    """wrk, and the CPU its target's worker processes used meanwhile (seconds)."""
    before = server.cpu_seconds()
    result = loadgen.wrk(server.base, script, connections=connections, seconds=seconds, env=env)
    return result, server.cpu_seconds() - before


def from_wrk(result: loadgen.WrkResult, cpu: float, events: int) -> Measurement:
    ok = result.requests - result.non_2xx
    return Measurement(
        value=result.rate * events,
        p50_ms=result.p50_ms,
        p95_ms=result.p95_ms,
        p99_ms=result.p99_ms,
        errors=result.errors,
        statuses=result.statuses,
        requests=ok,
        cpu_us=cpu * 1e6 / max(result.requests * events, 1),
    )


def ledger_env(state: RunState, scenario: str, members: int) -> dict[str, str]:
    return {
        "SCENARIO": scenario,
        "KEY": state.key,
        "MEMBERS": str(members),
        "BATCH": str(BATCH_EVENTS),
        "RUN_ID": uuid.uuid4().hex[:8],
    }


def measure_service(bench: Bench, state: RunState, name: str) -> Measurement:
    scenario = BY_NAME[name]
    assert state.svc is not None and scenario.lua is not None
    if name == "tiers":
        seed.tiers(state.svc.base, state.admin_key)
    result, cpu = timed_wrk(
        state.svc,
        LEDGER_LUA,
        scenario.connections,
        bench.args.seconds,
        ledger_env(state, scenario.lua, bench.args.members),
    )
    figure = from_wrk(result, cpu, scenario.events_per_request)
    for sample in result.samples:
        log(state, name, f"non-2xx answer: {sample}")
    if scenario.writes:
        state.posted += figure.requests * scenario.events_per_request
    figure.verify_s = service.verify(state.service_url)  # raises (and stops) on any drift
    return figure


def measure_bare_app(bench: Bench, state: RunState) -> Measurement:
    """The bare app runs only for its own step: its 32 pooled connections would otherwise
    leave pgbench's 32 clients no room under max_connections, and its idle workers share the
    cores with the service."""
    args, lua = bench.args, bench.baseline_dir / "earn.lua"
    app = baselines.start_app(bench.baseline_dir, state.baseline_url, args.workers, bench.work)
    try:
        loadgen.wrk(app.base, lua, connections=32, seconds=WARM_UP_SECONDS, env={})
        result, cpu = timed_wrk(app, lua, 32, args.seconds, {})
    finally:
        app.stop()
    return from_wrk(result, cpu, 1)


def measure_baseline(bench: Bench, state: RunState, name: str) -> Measurement:
    seconds = bench.args.seconds
    if name == "bare_app":
        return measure_bare_app(bench, state)
    run = baselines.pgbench_earn if name == "pgbench_earn" else baselines.pgbench_batch
    found = run(state.baseline_url, bench.baseline_dir, max(1, round(seconds)))
    events = BY_NAME[name].events_per_request
    return Measurement(
        found.tps * events,
        p50_ms=found.latency_ms,
        errors=found.failed,
        requests=found.transactions,
    )


def describe(figure: Measurement, unit: str) -> str:
    text = f"{figure.value:>9,.0f} {unit}"
    if figure.p99_ms is not None:
        text += f"  p50 {figure.p50_ms:.1f} p95 {figure.p95_ms:.1f} p99 {figure.p99_ms:.1f} ms"
    elif figure.p50_ms is not None:
        text += f"  avg {figure.p50_ms:.1f} ms"
    text += f"  errors {figure.errors}"
    if figure.statuses:
        text += (
            " (" + ", ".join(f"{n} x {code}" for code, n in sorted(figure.statuses.items())) + ")"
        )
    if figure.cpu_us is not None:
        text += f"  cpu {figure.cpu_us:,.0f} µs/req"
    if figure.verify_s is not None:
        text += f"  verify ok {figure.verify_s:.1f} s"
    return text


def profile_earn(bench: Bench, state: RunState) -> None:
    """An extra earn load, not counted, with py-spy on the first worker."""
    assert state.svc is not None
    pid = state.svc.worker_pids()[0]
    raw = bench.work / "pyspy-earn.txt"
    seconds = bench.args.seconds
    try:
        spy = pyspy.start(pid, seconds, raw)
    except (OSError, subprocess.CalledProcessError) as exc:
        print(f"  --profile: py-spy could not be installed or started ({exc})", flush=True)
        return
    time.sleep(0.5)  # let it attach before the load starts
    result, _ = timed_wrk(
        state.svc, LEDGER_LUA, 32, seconds, ledger_env(state, "earn", bench.args.members)
    )
    state.posted += result.requests - result.non_2xx
    out = spy.communicate()[0]
    if spy.returncode != 0 or not raw.exists():
        print(
            f"  --profile: py-spy could not sample worker {pid} (ptrace not allowed here?); "
            f"no profile. Its output:\n{out}",
            flush=True,
        )
        return
    summary = pyspy.summarise(raw, bench.work / "pyspy-earn-summary.txt")
    print(f"  --profile: py-spy summary {summary} (raw stacks {raw})", flush=True)


def verify_million(bench: Bench, state: RunState) -> Measurement:
    """Grow the run's ledger to --verify-transactions (counting the seed and every 2xx write
    of the run) through imports, then time `points-ledger verify` on it."""
    imported = max(0, bench.args.verify_transactions - state.posted)
    fill_seconds = seed.fill(state.service_url, bench.work, imported, bench.args.members)
    state.posted += imported
    log(
        state,
        "verify_1m",
        f"ledger grown by {imported:,} imported rows in {fill_seconds:.0f} s "
        f"({imported / max(fill_seconds, 1e-9):,.0f} rows/s, "
        f"{seed.FILL_PROCESSES} imports at once); "
        f"now >= {state.posted:,} transactions",
    )
    seconds = service.verify(state.service_url)
    return Measurement(seconds, requests=state.posted)


def run_steps(bench: Bench, state: RunState) -> None:
    for name in round_order(state.number, bench.chosen):
        scenario = BY_NAME[name]
        if scenario.kind == "baseline":
            figure = measure_baseline(bench, state, name)
        elif scenario.kind == "wrk":
            figure = measure_service(bench, state, name)
        else:
            continue  # import ran as the seed; verify_1m runs after the processes stop
        state.figures[name] = figure
        bench.loads.append(os.getloadavg()[0])
        log(state, name, describe(figure, scenario.unit))
        if name == "earn" and bench.args.profile and state.number == 1:
            profile_earn(bench, state)


def one_run(bench: Bench, number: int) -> Run:
    server, args = bench.server, bench.args
    state = RunState(
        number,
        postgres.create_database(server, "pl_bench"),
        baselines.create_database(server, bench.baseline_dir),
    )
    try:
        prepare(bench, state)
        state.svc = service.start(state.service_url, args.workers, bench.work)
        try:
            # connections, caches, prepared statements: not part of any figure
            loadgen.wrk(
                state.svc.base,
                LEDGER_LUA,
                connections=32,
                seconds=WARM_UP_SECONDS,
                env=ledger_env(state, "read", args.members),
            )
            run_steps(bench, state)
        finally:
            state.svc.stop()
        if number == args.runs and "verify_1m" in bench.chosen:
            state.figures["verify_1m"] = verify_million(bench, state)
            log(state, "verify_1m", f"verify took {state.figures['verify_1m'].value:.1f} s")
    finally:
        postgres.drop_database(server, state.service_url)
        postgres.drop_database(server, state.baseline_url)
    return state.figures


def print_report(bench: Bench, runs: list[Run], header: str) -> None:
    args = bench.args
    loads = bench.loads or [os.getloadavg()[0]]
    print(f"\n{header}")
    print(
        f"bench/run {' '.join(sys.argv[1:])}: median of {len(runs)} run(s), "
        f"{args.seconds:g} s per step, 32 connections (batch: 4), {args.workers} workers "
        f"(service and bare app), {args.members:,} members"
    )
    print(f"load average (1 min) during the runs: {min(loads):.1f} to {max(loads):.1f}\n")
    print(report.table(runs))
    print("\nPython CPU of the worker processes per request (median):\n")
    print(report.cpu_table(runs))
    if len(runs) > 1:
        print("\nEvery run:\n")
        print(report.per_run(runs))


def main() -> None:
    args = parse_args()
    chosen = selected(args.only)
    baseline_dir = baselines.locate(args.baseline_dir)
    server = postgres.choose_server()
    work = Path(tempfile.mkdtemp(prefix="points-ledger-bench-"))
    try:
        settings = postgres.settings(server)
        check_durability(settings, args.allow_non_durable)
        header = machine(settings)
        print(f"{header}\nbaselines: {baseline_dir}\nlogs and files: {work}", flush=True)
        bench = Bench(args, server, baseline_dir, chosen, work)
        bench.loads.append(os.getloadavg()[0])
        started = time.monotonic()
        runs = [one_run(bench, number) for number in range(1, args.runs + 1)]
        print_report(bench, runs, header)
        print(f"\ntotal time {(time.monotonic() - started) / 60:.1f} min")
        if args.json:
            args.json.write_text(
                json.dumps([{k: asdict(v) for k, v in r.items()} for r in runs], indent=1)
            )
    finally:
        server.close()
        for csv_file in work.glob("*.csv"):  # up to 1M rows; logs and profiles stay
            csv_file.unlink()


if __name__ == "__main__":
    main()
