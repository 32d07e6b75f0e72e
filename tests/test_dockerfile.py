"""The Dockerfile, checked without a Docker engine (none runs on these machines)."""

from __future__ import annotations

import re

from tests.support import ROOT

DOCKERFILE = (ROOT / "Dockerfile").read_text()


def _instructions() -> list[tuple[str, str]]:
    joined = re.sub(r"\\\n\s*", " ", DOCKERFILE)
    pairs = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            pairs.append((keyword.upper(), rest.strip()))
    return pairs


def test_multi_stage_slim_images() -> None:
    stages = [rest for keyword, rest in _instructions() if keyword == "FROM"]
    assert len(stages) >= 2
    assert all("slim" in stage for stage in stages)


def test_runs_as_a_non_root_user() -> None:
    users = [rest for keyword, rest in _instructions() if keyword == "USER"]
    assert users and users[-1] not in ("root", "0")


def test_serves_against_the_configured_database() -> None:
    instructions = dict(_instructions())
    assert "points-ledger" in instructions["ENTRYPOINT"]
    assert "serve" in instructions["CMD"]
    assert "POINTS_LEDGER_HOST=0.0.0.0" in DOCKERFILE
    assert "HEALTHCHECK" in instructions


def test_every_copied_path_exists() -> None:
    for keyword, rest in _instructions():
        if keyword != "COPY" or "--from=" in rest:
            continue
        sources = [part for part in rest.split() if not part.startswith("--")][:-1]
        for source in sources:
            assert (ROOT / source).exists(), source
