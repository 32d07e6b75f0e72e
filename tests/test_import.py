"""`points-ledger import FILE.csv`: the batch path from a file, re-runnable."""

from __future__ import annotations

import csv
from datetime import UTC, datetime, timedelta

from tests.support import available, run_cli

HEADER = [
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
]


async def test_import_posts_reports_and_rerun_posts_nothing(
    client, program, database_url, tmp_path
):
    yesterday = (datetime.now(UTC) - timedelta(days=1)).isoformat()
    rows = [
        ["s1", "earn", "ann", "", "o-1", "4250", "EUR", yesterday, "store-1", "till-1"],
        ["s2", "earn", "ann", "10", "", "", "", "", "store-1", ""],
        ["s3", "redeem", "ann", "20", "o-1", "", "", "", "", ""],
        ["s4", "redeem", "ann", "999", "", "", "", "", "", ""],
        ["s5", "earn", "bob", "ten", "", "", "", "", "", ""],
        ["s6", "earn", "cat", "5", "o-9", "100", "USD", "", "", ""],
    ]
    path = tmp_path / "sales.csv"
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(HEADER)
        writer.writerows(rows)

    first = await run_cli(
        database_url, "import", str(path), "--program", program.slug, "--batch-size", "2"
    )
    assert first.returncode == 0, first.stderr
    assert await available(client, program, "ann") == 42 + 10 - 20
    rejected = list(csv.DictReader((tmp_path / "sales.rejected.csv").open()))
    assert [(r["id"], r["error_code"]) for r in rejected] == [
        ("s4", "insufficient_points"),
        ("s5", "validation_error"),
        ("s6", "currency_mismatch"),
    ]
    assert "posted 3, duplicate 0, rejected 3" in first.stdout
    assert "rejected 1 x insufficient_points" in first.stdout

    again = await run_cli(database_url, "import", str(path), "--program", program.slug)
    assert again.returncode == 0, again.stderr
    assert "posted 0, duplicate 3, rejected 3" in again.stdout
    assert await available(client, program, "ann") == 32


async def test_import_into_an_unknown_program_fails_cleanly(database_url, tmp_path):
    path = tmp_path / "e.csv"
    path.write_text("id,type,member,points\nx,earn,a,1\n")
    result = await run_cli(database_url, "import", str(path), "--program", "no-such-program")
    assert result.returncode == 2
    assert "no program" in result.stderr
