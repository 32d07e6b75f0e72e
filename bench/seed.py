"""Data for the scenarios, put in through the service's public interfaces only: the
`points-ledger` command (program create, keys create, import) and the admin API."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

from bench import postgres, service
from bench.scenarios import TIER_RULES, TIERS

SLUG = "bench"
# the program the 1M ledger is grown in: without rules that depend on the member (the bench
# program has them after `tiers`), so that its imports take the set-based batch path
FILL_SLUG = "bench-fill"
# every member's starting balance: enough that redeem never runs dry, and far below the tiered
# program's daily cap, which counts explicit-points earns (the seed's) as well as orders
SEED_POINTS = 10_000
FILL_PROCESSES = 4  # imports at once while growing the ledger to 1M (like 4 tills)


def program(url: str) -> tuple[str, str]:
    """The bench's program (the command migrates the fresh database first): its admin key,
    and a key with the scopes a checkout has."""
    admin_key = service.create_program(url, SLUG)
    return admin_key, service.create_key(url, SLUG, "earn,redeem,read")


def members(url: str, work: Path, count: int) -> float:
    """Members m1..mCOUNT, each with SEED_POINTS, through `points-ledger import` of one CSV;
    the import's wall time."""
    path = work / "seed.csv"
    service.write_csv(
        path, ((f"seed-{m}", "earn", f"m{m}", SEED_POINTS) for m in range(1, count + 1))
    )
    # autovacuum may be off (it is on this machine): keep statistics current as tables fill
    with postgres.analyzing_every(url, 10):
        seconds = service.import_csv(url, path, SLUG)
    postgres.analyze(url)
    return seconds


def fill(url: str, work: Path, rows: int, member_count: int) -> float:
    """`rows` more explicit-points earns, in a program of their own (FILL_SLUG, members
    f1..fN), through FILL_PROCESSES imports at once, each on its own slice of the members so
    that no two wait on one member's lock; their wall time."""
    service.create_program(url, FILL_SLUG)
    share = -(-rows // FILL_PROCESSES)  # rows per import, rounded up
    width = max(1, member_count // FILL_PROCESSES)
    paths = []
    for part in range(FILL_PROCESSES):
        path = work / f"fill-{part}.csv"
        service.write_csv(
            path,
            (
                (f"fill-{i}", "earn", f"f{1 + (part * width + i % width) % member_count}", 1)
                for i in range(part * share, min(rows, (part + 1) * share))
            ),
        )
        paths.append(path)
    with postgres.analyzing_every(url, 30):
        seconds = service.import_parallel(url, paths, FILL_SLUG)
    postgres.analyze(url)
    return seconds


def tiers(base: str, admin_key: str) -> None:
    """Three tiers (PUT /v1/program), a first-purchase bonus and a daily cap (POST /v1/rules);
    returns once every worker sees them."""
    current = service.http(base, "GET", "/v1/program", admin_key)
    service.http(
        base,
        "PUT",
        "/v1/program",
        admin_key,
        {**current, "tiers": TIERS},
        idempotency_key=f"bench-tiers-{uuid.uuid4().hex}",
    )
    for rule in TIER_RULES:
        service.http(
            base,
            "POST",
            "/v1/rules",
            admin_key,
            rule,
            idempotency_key=f"bench-rule-{rule['id']}-{uuid.uuid4().hex}",
        )
    time.sleep(service.CACHE_TTL_SECONDS + 1)  # until every worker has dropped its cached rules
