"""Concurrency: many real connections at once against one member.

These go through a real `points-ledger serve` process over TCP (50 client connections) and,
separately, straight to PostgreSQL over 50 connections, so the database sees the requests
truly in parallel.
"""

from __future__ import annotations

import asyncio

import asyncpg
import httpx
import pytest

from tests.support import available, earn, libpq_url, new_key

CONCURRENCY = 50


@pytest.fixture
async def live_client(live_server):
    limits = httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY)
    async with httpx.AsyncClient(base_url=live_server.base_url, limits=limits, timeout=60) as http:
        yield http


async def test_fifty_concurrent_redeems_never_overdraw(live_client, program):
    """Balance 1,000; fifty redeems of 30 at once: exactly 33 can be afforded."""
    await earn(live_client, program, "hot", 1000)
    barrier = asyncio.Barrier(CONCURRENCY)

    async def one_redeem() -> httpx.Response:
        await barrier.wait()
        return await live_client.post(
            "/v1/redeem", json={"member": "hot", "points": 30}, headers=program.write_headers()
        )

    responses = await asyncio.gather(*(one_redeem() for _ in range(CONCURRENCY)))
    statuses = [r.status_code for r in responses]
    assert statuses.count(201) == 1000 // 30
    refused = [r for r in responses if r.status_code != 201]
    assert len(refused) == CONCURRENCY - 1000 // 30
    assert {r.json()["code"] for r in refused} == {"insufficient_points"}
    assert await available(live_client, program, "hot") == 1000 - 30 * (1000 // 30)
    balances_after = sorted(
        r.json()["balance"]["available"] for r in responses if r.status_code == 201
    )
    assert balances_after == list(range(1000 - 33 * 30, 1000, 30))  # each saw a distinct balance


async def test_fifty_connections_posting_directly_in_sql(database_url, program, client):
    """The floor holds in the database itself: 50 connections call the posting function."""
    await earn(client, program, "sql-hot", 500)
    pool = await asyncpg.create_pool(
        libpq_url(database_url), min_size=CONCURRENCY, max_size=CONCURRENCY
    )
    try:
        redemption = await pool.fetchval(
            "SELECT id FROM accounts WHERE program_id = $1 AND kind = 'redemption'", program.id
        )

        async def one(i: int) -> str:
            try:
                await pool.fetchrow(
                    "SELECT * FROM api_move_points($1, $2, '\\x00', 'redeem', 'sql-hot', false,"
                    " -7, 7, $3, now(), NULL, NULL, '{}', NULL, NULL, NULL, NULL, NULL, 0)",
                    program.id,
                    f"sql-{i}-{new_key()}",
                    redemption,
                )
                return "ok"
            except asyncpg.PostgresError as exc:
                return exc.sqlstate

        outcomes = await asyncio.gather(*(one(i) for i in range(CONCURRENCY * 2)))
    finally:
        await pool.close()
    assert outcomes.count("ok") == 500 // 7
    assert set(outcomes) == {"ok", "PL100"}
    assert await available(client, program, "sql-hot") == 500 % 7


async def test_concurrent_earns_on_one_member_all_count(live_client, program):
    results = await asyncio.gather(
        *(earn(live_client, program, "busy", 3) for _ in range(CONCURRENCY))
    )
    assert {r.status_code for r in results} == {201}
    assert await available(live_client, program, "busy") == 3 * CONCURRENCY


async def test_concurrent_first_earns_enrol_one_member(live_client, program):
    results = await asyncio.gather(*(earn(live_client, program, "fresh", 1) for _ in range(20)))
    assert {r.status_code for r in results} == {201}
    assert await available(live_client, program, "fresh") == 20


async def test_concurrent_reversals_reverse_once(live_client, program):
    transaction_id = (await earn(live_client, program, "rev", 40)).json()["transaction_id"]
    results = await asyncio.gather(
        *(
            live_client.post(
                f"/v1/transactions/{transaction_id}/reverse", headers=program.write_headers()
            )
            for _ in range(10)
        )
    )
    statuses = sorted(r.status_code for r in results)
    assert statuses == [201] + [409] * 9
    assert {r.json()["code"] for r in results if r.status_code == 409} == {"already_reversed"}
    assert await available(live_client, program, "rev") == 0


async def test_many_members_concurrently_with_transfers_of_locks(live_client, program):
    """Earns and redeems over a handful of members interleave without deadlocks or drift."""
    members = [f"mix-{i}" for i in range(5)]
    for member in members:
        await earn(live_client, program, member, 100)

    async def work(i: int) -> httpx.Response:
        member = members[i % len(members)]
        if i % 3 == 0:
            return await earn(live_client, program, member, 2)
        return await live_client.post(
            "/v1/redeem",
            json={"member": member, "points": 5},
            headers=program.write_headers(new_key()),
        )

    results = await asyncio.gather(*(work(i) for i in range(150)))
    assert {r.status_code for r in results} <= {201, 409}
    for member in members:
        ours = [
            r
            for i, r in enumerate(results)
            if members[i % len(members)] == member and r.status_code == 201
        ]
        earned = sum(2 for r in ours if r.request.url.path == "/v1/earn")
        spent = sum(5 for r in ours if r.request.url.path == "/v1/redeem")
        assert await available(live_client, program, member) == 100 + earned - spent
