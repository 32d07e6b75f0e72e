"""Quotes, transfers, POS fields, money values and the worker."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from app.db import Database
from app.worker import jobs
from tests.conftest import make_program
from tests.support import available, earn, move_clock, redeem, run_cli


async def test_quote_writes_nothing(client, database, sql):
    program = await make_program(database, base_rate=Decimal(2), point_value=Decimal("0.5"))
    await earn(client, program, "ann", 1_000)
    before = await sql.fetchval(
        "SELECT count(*) FROM transactions WHERE program_id = $1", program.id
    )
    response = await client.post(
        "/v1/quotes",
        json={
            "member": "ann",
            "order": {
                "amount": 4_999,
                "currency": "EUR",
                "items": [
                    {"sku": "mug", "category": "kitchen", "quantity": 1, "unit_price": 4_999}
                ],
            },
            "redeem_points": 300,
        },
        headers=program.headers,
    )
    assert response.status_code == 200, response.text
    quote = response.json()
    assert quote["earn_points"] == 99  # EUR 49.99 x 2 = 99.98, rounded down
    assert quote["redeemable_points"] == 1_000
    assert quote["redeemable_value"] == {"amount": 500, "currency": "EUR"}  # 0.5 cent a point
    assert quote["redeem_allowed"] is True
    assert quote["redeem_value"] == {"amount": 150, "currency": "EUR"}
    assert quote["balance_after"]["available"] == 1_000 - 300 + 99
    after = await sql.fetchval(
        "SELECT count(*) FROM transactions WHERE program_id = $1", program.id
    )
    assert after == before
    assert await available(client, program, "ann") == 1_000

    too_much = await client.post(
        "/v1/quotes",
        json={"member": "ann", "order": {"amount": 0, "currency": "EUR"}, "redeem_points": 1_001},
        headers=program.headers,
    )
    assert too_much.json()["redeem_allowed"] is False
    stranger = await client.post(
        "/v1/quotes",
        json={"member": "new-face", "order": {"amount": 1_000, "currency": "EUR"}},
        headers=program.headers,
    )
    assert stranger.json()["known_member"] is False
    assert stranger.json()["earn_points"] == 20


async def test_money_values_on_every_balance(client, database):
    program = await make_program(database, currency="EUR", point_value=Decimal(1))
    body = (await earn(client, program, "ben", 1_250)).json()
    assert body["balance"]["available"] == 1_250
    assert body["balance"]["available_value"] == {"amount": 1_250, "currency": "EUR"}  # EUR 12.50
    member = (await client.get("/v1/members/ben", headers=program.headers)).json()
    assert member["balance"]["held_value"] == {"amount": 0, "currency": "EUR"}


async def test_transfer_moves_both_legs_or_neither(client, database):
    program = await make_program(database)
    await earn(client, program, "cal", 100)
    await earn(client, program, "dot", 1)
    response = await client.post(
        "/v1/transfers",
        json={"from_member": "cal", "to_member": "dot", "points": 60},
        headers=program.write_headers(),
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert (body["from_balance"]["available"], body["to_balance"]["available"]) == (40, 61)
    too_much = await client.post(
        "/v1/transfers",
        json={"from_member": "cal", "to_member": "dot", "points": 41},
        headers=program.write_headers(),
    )
    assert too_much.json()["code"] == "insufficient_points"
    assert (await available(client, program, "cal"), await available(client, program, "dot")) == (
        40,
        61,
    )
    history = (await client.get("/v1/members/dot/transactions", headers=program.headers)).json()
    assert (history["items"][0]["kind"], history["items"][0]["points"]) == ("transfer", 60)
    same = await client.post(
        "/v1/transfers",
        json={"from_member": "cal", "to_member": "cal", "points": 1},
        headers=program.write_headers(),
    )
    assert same.json()["code"] == "same_member"
    missing = await client.post(
        "/v1/transfers",
        json={"from_member": "cal", "to_member": "ghost", "points": 1},
        headers=program.write_headers(),
    )
    assert missing.json()["code"] == "member_not_found"


async def test_member_transfers_need_admin_unless_enabled(client, database):
    closed = await make_program(database)
    await earn(client, closed, "a", 10)
    await earn(client, closed, "b", 10)
    key = await closed.key_with("redeem")
    body = {"from_member": "a", "to_member": "b", "points": 1}
    refused = await client.post(
        "/v1/transfers", json=body, headers=closed.write_headers(api_key=key)
    )
    assert (refused.status_code, refused.json()["code"]) == (403, "transfers_disabled")

    opened = await make_program(database, member_transfers=True)
    await earn(client, opened, "a", 10)
    await earn(client, opened, "b", 10)
    key = await opened.key_with("redeem")
    allowed = await client.post(
        "/v1/transfers", json=body, headers=opened.write_headers(api_key=key)
    )
    assert allowed.status_code == 201


async def test_pos_sales_keep_store_terminal_and_business_time(client, program, sql):
    sold_at = datetime.now(UTC) - timedelta(days=12)
    headers = program.write_headers(key="pos-7-sale-991")
    body = {
        "member": "eve",
        "points": 15,
        "occurred_at": sold_at.isoformat(),
        "store_id": "store-7",
        "terminal_id": "till-2",
    }
    first = await client.post("/v1/earn", json=body, headers=headers)
    synced_again = await client.post("/v1/earn", json=body, headers=headers)
    assert synced_again.headers["Idempotent-Replayed"] == "true"
    row = await sql.fetchrow(
        "SELECT store_id, terminal_id, occurred_at FROM transactions WHERE id = $1",
        first.json()["transaction_id"],
    )
    assert (row["store_id"], row["terminal_id"], row["occurred_at"]) == (
        "store-7",
        "till-2",
        sold_at,
    )
    assert await available(client, program, "eve") == 15


async def test_two_workers_release_due_work_exactly_once(
    client, database, database_url, settings, sql
):
    program = await make_program(database, pending_days=3)
    for i in range(6):
        await client.post(
            "/v1/earn",
            json={"member": f"w{i}", "order": {"id": f"w-{i}", "amount": 1_000, "currency": "EUR"}},
            headers=program.write_headers(),
        )
        await earn(client, program, f"w{i}", 5)
        await client.post(
            "/v1/holds",
            json={"member": f"w{i}", "points": 5, "expires_in": 60},
            headers=program.write_headers(),
        )
    await move_clock(
        sql,
        program.id,
        "UPDATE pending_lots SET release_at = now() - interval '1 second' WHERE program_id = $1",
        program.id,
    )
    await move_clock(
        sql,
        program.id,
        "UPDATE holds SET expires_at = now() - interval '1 second' WHERE program_id = $1",
        program.id,
    )
    first = await Database.connect(database_url, settings)
    second = await Database.connect(database_url, settings)
    try:
        results = await asyncio.gather(jobs.run_pass(first), jobs.run_pass(second))
    finally:
        await first.close()
        await second.close()
    assert sum(r.postings for r in results) >= 12  # 6 settlements + 6 expired holds, once each
    settles = await sql.fetchval(
        "SELECT count(*) FROM transactions WHERE program_id = $1 AND kind = 'settle'", program.id
    )
    releases = await sql.fetchval(
        "SELECT count(*) FROM transactions WHERE program_id = $1 AND kind = 'release'", program.id
    )
    assert (settles, releases) == (6, 6)
    for i in range(6):
        assert await available(client, program, f"w{i}") == 15
    again = await run_cli(database_url, "worker", "--once")
    assert again.returncode == 0, again.stderr
    verify = await run_cli(database_url, "verify")
    assert verify.returncode == 0, verify.stdout


async def test_verify_holds_after_the_checkout_flows(client, database, database_url):
    program = await make_program(database, pending_days=5, return_policy="allow_negative")
    await client.post(
        "/v1/earn",
        json={"member": "zed", "order": {"id": "z-1", "amount": 10_000, "currency": "EUR"}},
        headers=program.write_headers(),
    )
    await earn(client, program, "zed", 30)
    await redeem(client, program, "zed", 10, order_id="z-1")
    await client.post(
        "/v1/holds", json={"member": "zed", "points": 5}, headers=program.write_headers()
    )
    await client.post(
        "/v1/orders/z-1/refunds",
        json={"amount": 4_000, "currency": "EUR"},
        headers=program.write_headers(),
    )
    await client.post("/v1/orders/z-1/cancel", headers=program.write_headers())
    result = await run_cli(database_url, "verify")
    assert result.returncode == 0, result.stdout
