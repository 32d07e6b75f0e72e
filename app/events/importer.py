"""`points-ledger import FILE.csv`: load POS or historical events through the batch path.

Columns (header row; empty cells are absent): id, type (earn|redeem), member, points,
order_id, order_amount, currency, occurred_at, store_id, terminal_id. An earn with
order_amount and currency earns from the order; a redeem's order_id names the order it paid.
Each row's `id` is its idempotency key, so re-running a file posts nothing new.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app.events.schemas import EventResult
from app.events.service import post_batch
from app.points.service import Ledger
from app.programs.models import Program

COLUMNS = (
    "id",
    "type",
    "member",
    "points",
    "order_id",
    "order_amount",
    "currency",
    "occurred_at",
    "store_id",
    "terminal_id",
)


def _integer(value: str) -> int | str:
    """CSV has only text: whole numbers become integers, anything else stays text (and is
    refused by validation, with the row's reason)."""
    stripped = value.strip()
    if stripped.lstrip("-").isdigit():
        return int(stripped)
    return value


def row_to_event(row: dict[str, str]) -> dict[str, Any]:
    cells = {k.strip(): v for k, v in row.items() if k and v is not None and v.strip() != ""}
    event: dict[str, Any] = {
        name: cells[name]
        for name in ("id", "type", "member", "occurred_at", "store_id", "terminal_id")
        if name in cells
    }
    if "points" in cells:
        event["points"] = _integer(cells["points"])
    if event.get("type") == "earn" and "order_amount" in cells:
        event["order"] = {
            "id": cells.get("order_id", ""),
            "amount": _integer(cells["order_amount"]),
            "currency": cells.get("currency", ""),
        }
    elif "order_id" in cells:
        event["order_id"] = cells["order_id"]
    unknown = set(cells) - set(COLUMNS)
    for name in sorted(unknown):
        event[name] = cells[name]  # refused as an unknown field, with its name
    return event


@dataclass
class ImportSummary:
    posted: int = 0
    duplicate: int = 0
    rejected: int = 0
    reasons: dict[str, int] = field(default_factory=dict)


def read_rows(path: Path) -> Iterator[dict[str, str]]:
    with path.open(newline="", encoding="utf-8-sig") as handle:
        yield from csv.DictReader(handle)


async def import_rows(
    ledger: Ledger,
    program: Program,
    rows: list[dict[str, str]],
    *,
    batch_size: int,
    rejects: csv.DictWriter[str] | None,
    on_batch: Any = None,
) -> ImportSummary:
    summary = ImportSummary()
    for start in range(0, len(rows), batch_size):
        chunk = rows[start : start + batch_size]
        result = await post_batch(
            ledger, program=program, raw_events=[row_to_event(row) for row in chunk]
        )
        summary.posted += result.posted
        summary.duplicate += result.duplicate
        summary.rejected += result.rejected
        for row, outcome in zip(chunk, result.results, strict=True):
            _record_rejection(summary, rejects, row, outcome)
        if on_batch is not None:
            on_batch(len(chunk))
    return summary


def _record_rejection(
    summary: ImportSummary,
    rejects: csv.DictWriter[str] | None,
    row: dict[str, str],
    outcome: EventResult,
) -> None:
    if outcome.status != "rejected" or outcome.problem is None:
        return
    code = outcome.problem.code
    summary.reasons[code] = summary.reasons.get(code, 0) + 1
    if rejects is not None:
        rejects.writerow({**row, "error_code": code, "error_detail": outcome.problem.detail or ""})
