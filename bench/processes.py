"""Uvicorn servers under test (the service and the bare baseline app): start, wait until they
answer, stop, and read their worker processes' CPU time from /proc."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _answers(url: str) -> bool:
    """Any HTTP answer (a 404 or 405 included) means the app is up; a refused or reset
    connection means it is not."""
    try:
        urllib.request.urlopen(url, timeout=2).close()
    except urllib.error.HTTPError:
        return True
    except (OSError, urllib.error.URLError):
        return False
    return True


@dataclass
class Server:
    """A uvicorn supervisor with `workers` worker processes, listening on `base`."""

    name: str
    process: subprocess.Popen[bytes]
    base: str
    workers: int
    log: Path

    def worker_pids(self) -> list[int]:
        """The supervisor's children that run the app. uvicorn spawns them with
        multiprocessing, so their command line names `spawn_main` (the resource tracker, also
        a child, does not). With one worker, uvicorn serves from the supervisor itself."""
        if self.workers == 1:
            return [self.process.pid]
        pids = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:
                continue  # the process ended while we looked
            ppid = int(stat.rpartition(")")[2].split()[1])
            if ppid == self.process.pid and b"spawn_main" in cmdline:
                pids.append(int(entry.name))
        return sorted(pids)

    def cpu_seconds(self) -> float:
        """User + system CPU time consumed so far by the worker processes."""
        return sum(process_cpu_seconds(pid) for pid in self.worker_pids())

    def wait_ready(self, probe_path: str, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited at start-up; see {self.log}")
            if _answers(self.base + probe_path) and len(self.worker_pids()) == self.workers:
                return
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"{self.name} did not answer within {timeout:.0f}s; see {self.log}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def process_cpu_seconds(pid: int) -> float:
    """utime + stime of one process (fields 14 and 15 of /proc/PID/stat), in seconds."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def start(
    name: str,
    argv: list[str],
    *,
    env: dict[str, str],
    cwd: Path,
    port: int,
    workers: int,
    log_dir: Path,
) -> Server:
    log = log_dir / f"{name}.log"
    handle = log.open("ab")
    process = subprocess.Popen(
        argv, cwd=cwd, env={**os.environ, **env}, stdout=handle, stderr=subprocess.STDOUT
    )
    handle.close()  # the child keeps its own descriptor
    return Server(name, process, f"http://127.0.0.1:{port}", workers, log)
