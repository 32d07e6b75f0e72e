"""--profile: py-spy on one service worker during an extra (uncounted) earn load, summarised
as the functions with the most samples, on their own (self) and with what they call (total)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

TOP = 30


def ensure_installed() -> str:
    """py-spy from the bench's venv, installed there on first use (only with --profile)."""
    venv_bin = Path(sys.executable).parent
    found = shutil.which("py-spy", path=str(venv_bin)) or shutil.which("py-spy")
    if found:
        return found
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "py-spy"], check=True)
    return str(venv_bin / "py-spy")


def start(pid: int, seconds: float, raw: Path) -> subprocess.Popen[str]:
    """`py-spy record --format raw` (collapsed stacks) on `pid` for `seconds`; non-blocking,
    so the worker is not paused at every sample."""
    return subprocess.Popen(
        [
            ensure_installed(),
            "record",
            "--pid",
            str(pid),
            "--duration",
            str(int(seconds)),
            "--rate",
            "200",
            "--nonblocking",
            "--format",
            "raw",
            "--output",
            str(raw),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def summarise(raw: Path, out: Path) -> Path:
    """Self and total samples per function from collapsed stacks (`f1;f2;f3 count`)."""
    own: Counter[str] = Counter()
    total: Counter[str] = Counter()
    samples = 0
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_function(frame) for frame in stack.split(";")]
        samples += count
        own[frames[-1]] += count
        for frame in set(frames):
            total[frame] += count
    lines = [
        f"py-spy: {samples} samples of one service worker during the earn load (idle time"
        " excluded; time in C or Cython code, such as asyncpg's protocol, counts for the Python"
        " function that called it)",
        "",
    ]
    for title, counter in (("self (where the CPU went)", own), ("total (with callees)", total)):
        lines += [f"top {TOP} functions, {title}:"]
        for frame, count in counter.most_common(TOP):
            lines.append(f"{100 * count / max(samples, 1):6.1f}%  {frame}")
        lines.append("")
    out.write_text("\n".join(lines))
    return out


def _function(frame: str) -> str:
    """`name (path/file.py:123)` -> `name (path/file.py)`: one line per function, not per line."""
    name, _, location = frame.partition(" (")
    return f"{name} ({location.rpartition(':')[0] or location.rstrip(')')})"
