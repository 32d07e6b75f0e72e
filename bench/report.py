"""The figures of each run, and the report: medians over the runs, each scenario beside what it
is compared with, the ratio (the median of the per-run ratios), its target and whether it is
met, and the Python CPU per request."""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field

from bench.scenarios import BY_NAME, SCENARIOS, Scenario


@dataclass
class Measurement:
    """One scenario in one run. `value` is a rate (req/s or events/s) or, for import and
    verify, a wall time in seconds."""

    value: float
    p50_ms: float | None = None
    p95_ms: float | None = None
    p99_ms: float | None = None
    errors: int = 0
    statuses: dict[str, int] = field(default_factory=dict)  # non-2xx answers by status
    requests: int = 0
    cpu_us: float | None = None  # CPU of the app's worker processes per request (or event)
    verify_s: float | None = None  # `points-ledger verify` after the scenario


Run = dict[str, Measurement]


def _median(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def median_of(runs: list[Run], name: str, attribute: str = "value") -> float | None:
    return _median([getattr(run[name], attribute) for run in runs if name in run])


def ratio(runs: list[Run], scenario: Scenario) -> float | None:
    """The median over runs of service ÷ compared figure, each pair from the same run."""
    if scenario.compare is None:
        return None
    return _median(
        [
            run[scenario.name].value / run[scenario.compare].value
            for run in runs
            if scenario.name in run and scenario.compare in run and run[scenario.compare].value
        ]
    )


def met(runs: list[Run], scenario: Scenario) -> bool | None:
    """Whether every part of the target holds on the medians (None: no target)."""
    target = scenario.target
    checks: list[bool] = []
    value = median_of(runs, scenario.name)
    if target.ratio is not None:
        found = ratio(runs, scenario)
        checks.append(found is not None and found >= target.ratio)
    if target.at_least is not None:
        checks.append(value is not None and value >= target.at_least)
    if target.p99_ms is not None:
        p99 = median_of(runs, scenario.name, "p99_ms")
        checks.append(p99 is not None and p99 <= target.p99_ms)
    if target.seconds is not None:
        checks.append(value is not None and value <= target.seconds)
    return all(checks) if checks else None


def _num(value: float | None, digits: int = 0) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def table(runs: list[Run]) -> str:
    """A markdown table, one row per scenario measured."""
    lines = [
        "| scenario | figure | p50 ms | p95 ms | p99 ms | errors | compared with | its figure "
        "| ratio | target | met |",
        "| --- | ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: | --- | --- |",
    ]
    for scenario in SCENARIOS:
        if not any(scenario.name in run for run in runs):
            continue
        value = median_of(runs, scenario.name)
        digits = 1 if scenario.unit == "s" else 0
        compare = BY_NAME[scenario.compare] if scenario.compare else None
        found = ratio(runs, scenario)
        verdict = met(runs, scenario)
        errors = sum(run[scenario.name].errors for run in runs if scenario.name in run)
        lines.append(
            "| "
            + " | ".join(
                [
                    f"`{scenario.name}` {scenario.title}",
                    f"{_num(value, digits)} {scenario.unit}",
                    _num(median_of(runs, scenario.name, "p50_ms"), 1),
                    _num(median_of(runs, scenario.name, "p95_ms"), 1),
                    _num(median_of(runs, scenario.name, "p99_ms"), 1),
                    str(errors) if scenario.kind in ("wrk", "baseline") else "-",
                    f"`{compare.name}`" if compare else "-",
                    f"{_num(median_of(runs, compare.name))} {compare.unit}" if compare else "-",
                    f"{found:.2f} x" if found is not None else "-",
                    scenario.target.describe(scenario.unit),
                    {True: "yes", False: "**no**", None: "-"}[verdict],
                ]
            )
            + " |"
        )
    lines.append(
        "\n(pgbench rows: pgbench's average latency in the p50 column; errors: its failed"
        " transactions.)"
    )
    return "\n".join(lines)


def cpu_table(runs: list[Run]) -> str:
    """Python CPU per request of the worker processes, service scenarios beside the bare app."""
    lines = ["| scenario | CPU µs per request (event) | ÷ bare app |", "| --- | ---: | ---: |"]
    bare = median_of(runs, "bare_app", "cpu_us")
    for scenario in SCENARIOS:
        cpu = median_of(runs, scenario.name, "cpu_us")
        if cpu is None:
            continue
        versus = f"{cpu / bare:.1f} x" if bare and scenario.name != "bare_app" else "-"
        lines.append(f"| `{scenario.name}` | {cpu:,.0f} | {versus} |")
    return "\n".join(lines)


def per_run(runs: list[Run]) -> str:
    """Every run's figure, to show the spread behind each median."""
    header = "| scenario | " + " | ".join(f"run {n}" for n in range(1, len(runs) + 1)) + " |"
    lines = [header, "| --- |" + " ---: |" * len(runs)]
    for scenario in SCENARIOS:
        if not any(scenario.name in run for run in runs):
            continue
        digits = 1 if scenario.unit == "s" else 0
        cells = [
            _num(run[scenario.name].value, digits) if scenario.name in run else "-" for run in runs
        ]
        lines.append(f"| `{scenario.name}` ({scenario.unit}) | " + " | ".join(cells) + " |")
    return "\n".join(lines)
