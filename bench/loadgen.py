"""wrk: one timed load against a URL, read back from a Lua `done()` summary."""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

WRK_DIR = Path(__file__).resolve().parent / "wrk"
SUMMARY = WRK_DIR / "summary.lua"


@dataclass
class WrkResult:
    requests: int
    seconds: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    socket_errors: int
    non_2xx: int  # wrk counts answers >= 400 (3xx would show in `statuses` only)
    statuses: dict[str, int]  # answers other than 2xx, by status code
    samples: list[str]  # "STATUS body" of the first answer of each such status

    @property
    def rate(self) -> float:
        return self.requests / self.seconds

    @property
    def errors(self) -> int:
        return self.socket_errors + self.non_2xx


def _wrapper(script: Path) -> Path:
    """A script that loads `script` unchanged and adds the summary `done()`: the baseline's
    earn.lua is used as it is, and only one `-s` script is allowed."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as handle:
        handle.write(f"dofile({json.dumps(str(script))})\ndofile({json.dumps(str(SUMMARY))})\n")
    return Path(handle.name)


def wrk(
    base: str, script: Path, *, connections: int, seconds: float, env: dict[str, str]
) -> WrkResult:
    """`wrk -t2 -cN -dS --latency` with `script`; 2 threads (one per core, and never more
    threads than connections)."""
    wrapper = _wrapper(script)
    try:
        out = subprocess.run(
            [
                "wrk",
                f"-t{min(2, connections)}",
                f"-c{connections}",
                f"-d{seconds:g}s",
                "--timeout",
                "10s",
                "--latency",
                "-s",
                str(wrapper),
                base,
            ],
            env={**os.environ, **env},
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    finally:
        wrapper.unlink()
    if "RESULT " not in out:
        raise RuntimeError(f"wrk printed no summary:\n{out}")
    data = json.loads(out.split("RESULT ", 1)[1].splitlines()[0])
    return WrkResult(
        requests=data["requests"],
        seconds=data["duration_us"] / 1e6,
        p50_ms=data["p50_ms"],
        p95_ms=data["p95_ms"],
        p99_ms=data["p99_ms"],
        socket_errors=data["socket_errors"],
        non_2xx=data["non_2xx"],
        statuses=data["statuses"],
        samples=[line[7:] for line in out.splitlines() if line.startswith("SAMPLE ")],
    )
