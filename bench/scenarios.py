"""What the bench measures: the scenarios, what each is compared with, its target, and the
order in which a run measures them.

To add a scenario (the reward redemption endpoint, once it exists): add a `Scenario` to
SCENARIOS (marked NEXT SCENARIO below), put its name in ROUND, and add its request to
bench/wrk/ledger.lua (also marked). Nothing else needs to change.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Target:
    """What a scenario must reach. `ratio`: at least this share of the `compare` figure;
    `at_least`: an absolute rate; `p99_ms`: a latency ceiling; `seconds`: a wall time."""

    ratio: float | None = None
    at_least: float | None = None
    p99_ms: float | None = None
    seconds: float | None = None

    def describe(self, unit: str) -> str:
        parts = []
        if self.ratio is not None:
            parts.append(f">= {self.ratio:g} x")
        if self.at_least is not None:
            parts.append(f">= {self.at_least:,.0f} {unit}")
        if self.p99_ms is not None:
            parts.append(f"p99 <= {self.p99_ms:g} ms")
        if self.seconds is not None:
            parts.append(f"<= {self.seconds:g} s")
        return ", ".join(parts) or "report only"


@dataclass(frozen=True)
class Scenario:
    name: str
    title: str
    kind: str  # "wrk" (the service under wrk), "baseline", "import" or "verify"
    lua: str | None = None  # SCENARIO of bench/wrk/ledger.lua
    compare: str | None = None  # the figure the ratio divides by (a baseline or a scenario)
    target: Target = field(default_factory=Target)
    connections: int = 32
    events_per_request: int = 1  # > 1: the figure is events/s
    writes: bool = False  # posts transactions (counted towards the 1M ledger)

    @property
    def unit(self) -> str:
        if self.kind in ("import", "verify"):
            return "s"
        return "events/s" if self.events_per_request > 1 else "req/s"


BATCH_EVENTS = 1000
BATCH_TILLS = 4

SCENARIOS: tuple[Scenario, ...] = (
    # the baselines (../shared/baseline), measured between the service's scenarios
    Scenario("bare_app", "bare app: POST /earn (FastAPI + asyncpg, one statement)", "baseline"),
    Scenario("pgbench_earn", "pgbench earn_cte.sql, 32 clients (SQL ceiling)", "baseline"),
    Scenario(
        "pgbench_batch",
        "pgbench earn_batch.sql, 8 clients (x100 events)",
        "baseline",
        events_per_request=100,
    ),
    # the service
    Scenario(
        "earn",
        "POST /v1/earn, explicit points, Zipf members",
        "wrk",
        "earn",
        compare="bare_app",
        target=Target(ratio=0.75),
        writes=True,
    ),
    Scenario(
        "order",
        "POST /v1/earn, order priced by the rules (base rate)",
        "wrk",
        "order",
        compare="bare_app",
        target=Target(ratio=0.75),
        writes=True,
    ),
    Scenario(
        "tiers",
        "POST /v1/earn, order; 3 tiers + first-purchase bonus + daily cap",
        "wrk",
        "tiers",
        compare="earn",
        target=Target(ratio=0.6, p99_ms=100),
        writes=True,
    ),
    Scenario(
        "hot",
        "POST /v1/earn, hot member (every write on m1)",
        "wrk",
        "hot",
        compare="earn",
        target=Target(ratio=0.5),
        writes=True,
    ),
    Scenario(
        "redeem",
        "POST /v1/redeem, Zipf members",
        "wrk",
        "redeem",
        compare="earn",
        target=Target(ratio=0.8),
        writes=True,
    ),
    Scenario(
        "batch",
        f"POST /v1/events/batch, {BATCH_EVENTS:,} events, {BATCH_TILLS} tills",
        "wrk",
        "batch",
        compare="pgbench_batch",
        target=Target(ratio=0.6, at_least=20_000),
        connections=BATCH_TILLS,
        events_per_request=BATCH_EVENTS,
        writes=True,
    ),
    Scenario(
        "import",
        "points-ledger import, 100,000-row CSV (the seed)",
        "import",
        target=Target(seconds=10),
    ),
    Scenario("read", "GET /v1/members/{id}", "wrk", "read", target=Target(at_least=3_000)),
    Scenario("history", "GET /v1/members/{id}/transactions?limit=20", "wrk", "history"),
    Scenario(
        "verify_1m",
        "points-ledger verify, >= 1,000,000 transactions",
        "verify",
        target=Target(seconds=60),
    ),
    # NEXT SCENARIO: the reward redemption endpoint, e.g.
    # Scenario("reward", "POST /v1/rewards/{id}/redeem", "wrk", "reward",
    #          compare="redeem", target=Target(...), writes=True),
)
BY_NAME = {scenario.name: scenario for scenario in SCENARIOS}

# The order of one run, after the seed import. Baselines sit beside the scenarios they are
# compared with, and each group runs in reverse on even runs, so a drift of the machine's speed
# within a run does not always favour the same side. `tiers` comes last: it turns on the
# program's tiers and rules, which would change every earn after it.
ROUND: tuple[tuple[str, ...], ...] = (
    ("bare_app", "earn", "order"),
    ("pgbench_earn",),
    ("hot", "redeem"),
    ("pgbench_batch", "batch"),
    ("read", "history"),
    ("tiers",),
)
# measured once per invocation, at the end of the last run (it needs a 1M-transaction ledger)
ONCE = ("verify_1m",)


def selected(only: list[str] | None) -> set[str]:
    """The scenarios to run: `only` (all by default, `verify_1m` included) plus whatever they
    are compared with, so that every ratio can be computed."""
    if not only:
        return set(BY_NAME)
    unknown = [name for name in only if name not in BY_NAME]
    if unknown:
        raise SystemExit(f"unknown scenario(s): {', '.join(unknown)}; known: {', '.join(BY_NAME)}")
    chosen = set(only) | {"import"}  # the seed import runs (and is timed) in every run
    while True:
        needed = {BY_NAME[n].compare for n in chosen if BY_NAME[n].compare} - chosen
        if not needed:
            return chosen
        chosen |= {name for name in needed if name is not None}


def round_order(number: int, chosen: set[str]) -> list[str]:
    """The scenario names of run `number` (1-based), in the order they run."""
    names: list[str] = []
    for group in ROUND:
        ordered = group if number % 2 == 1 else tuple(reversed(group))
        names += [name for name in ordered if name in chosen]
    return names


# The tiered program of `tiers` (PUT /v1/program, POST /v1/rules): three tiers on qualifying
# points over a rolling year, a first-purchase bonus, and a daily cap high enough never to
# refuse an order (a capped order is a 422 nothing_to_earn), so that it costs its daily-total
# read on every earn without turning throughput into errors.
TIERS = {
    "metric": "qualifying_points",
    "period": "rolling",
    "rolling_months": 12,
    "grace_days": 30,
    "tiers": [
        {"code": "member", "name": "Member", "threshold": 0},
        {"code": "silver", "name": "Silver", "threshold": 1000, "earn_multiplier": "1.25"},
        {"code": "gold", "name": "Gold", "threshold": 5000, "earn_multiplier": "1.5"},
    ],
}
TIER_RULES = (
    {"id": "welcome", "kind": "first_purchase_bonus", "points": 100},
    {"id": "daily-cap", "kind": "daily_cap", "max_points": 1_000_000},
)
