"""Concurrency: many real connections at once against one member.

These go through a real `points-ledger serve` process over TCP (50 client connections) and,
separately, straight to PostgreSQL over 50 connections, so the database sees the requests
truly in parallel.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import UTC, datetime

import httpx
import pytest

from app.db import Database
from app.ledger.engine import EngineCall, Outcome, PostingEvent, post_events
from tests.support import TestProgram, available, earn, new_key

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


async def test_fifty_connections_posting_directly_in_sql(database_url, settings, program, client):
    """The floor holds in the database itself: fifty connections at once call the engine
    (`ledger_post_events`) with a redeem of 7 each, twice over; no Python decides anything."""
    await earn(client, program, "sql-hot", 500)
    database = await Database.connect(
        database_url, settings.model_copy(update={"pool_size": CONCURRENCY})
    )
    try:
        outcomes = await _redeem_sevens_at_once(database, program)
    finally:
        await database.close()
    posted = [o for o in outcomes if o.outcome == "posted"]
    refused = [o for o in outcomes if o.outcome == "refused"]
    assert len(posted) == 500 // 7
    assert len(refused) == CONCURRENCY * 2 - 500 // 7
    assert {o.body["code"] for o in refused} == {"insufficient_points"}
    # each posting saw the balance its predecessor left: 500 - 7, 500 - 14, ...
    assert sorted(o.body["balance"]["available"] for o in posted) == list(range(500 % 7, 500, 7))
    assert await available(client, program, "sql-hot") == 500 % 7


async def _redeem_sevens_at_once(database: Database, program: TestProgram) -> list[Outcome]:
    async with database.single() as db:
        version = await db.fetchval("SELECT version FROM programs WHERE id = $1", program.id)
    call = EngineCall(program_id=program.id, program_version=version, versioned=False)
    barrier = asyncio.Barrier(CONCURRENCY)

    async def one(i: int) -> Outcome:
        event = PostingEvent(
            key=f"sql-{i}-{new_key()}",
            fingerprint=b"\x00",
            kind="redeem",
            member="sql-hot",
            enroll=False,
            points=-7,
            occurred_at=datetime.now(UTC),
        )
        async with database.single() as db:
            if i < CONCURRENCY:
                await barrier.wait()
            [outcome] = await post_events(db, call, [event])
        return outcome

    return list(await asyncio.gather(*(one(i) for i in range(CONCURRENCY * 2))))


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


WRITERS = 64


def _is_serial_history(start: int, end: int, moves: list[tuple[int, int]]) -> bool:
    """Whether the (balance before, balance after) pairs can be put in one order that starts
    at `start`, ends at `end` and chains each after to the next before: an Eulerian path over
    the balances. True exactly when every answered balance is a state of some serial run."""
    out_minus_in: Counter[int] = Counter()
    parent: dict[int, int] = {}

    def root(node: int) -> int:
        while parent.setdefault(node, node) != node:
            node = parent[node]
        return node

    for before, after in moves:
        out_minus_in[before] += 1
        out_minus_in[after] -= 1
        parent[root(before)] = root(after)
    expected = Counter({start: 1, end: -1}) if start != end else Counter()
    connected = len({root(node) for node in parent}) <= 1 and (
        not moves or root(start) == root(end)
    )
    return +out_minus_in == +expected and -out_minus_in == -expected and connected


async def test_64_writers_on_one_member_with_group_commit(live_client, program, sql):
    """Sixty-four clients write to one member at the same moment through the live server (group
    commit on, as by default): 32 earns of 10 and 32 redeems of 40 on a balance of 1,000. No
    overdraft, every earn posts, the final balance is exactly what the posted writes add up
    to, every answered balance is a state of one serial history, every refusal saw a balance
    below 40 -- and the writes really were committed together."""
    await earn(live_client, program, "crowd", 1000)
    barrier = asyncio.Barrier(WRITERS)

    async def write(i: int) -> tuple[int, httpx.Response]:
        delta = 10 if i % 2 else -40
        path = "/v1/earn" if delta > 0 else "/v1/redeem"
        await barrier.wait()
        response = await live_client.post(
            path, json={"member": "crowd", "points": abs(delta)}, headers=program.write_headers()
        )
        return delta, response

    results = await asyncio.gather(*(write(i) for i in range(WRITERS)))
    posted = [(delta, r.json()) for delta, r in results if r.status_code == 201]
    refused = [r.json() for delta, r in results if r.status_code != 201]
    assert all(delta < 0 for delta, r in results if r.status_code != 201)
    assert {body["code"] for body in refused} <= {"insufficient_points"}
    final = 1000 + sum(delta for delta, _ in posted)
    assert await available(live_client, program, "crowd") == final
    assert all(body["balance"]["available"] >= 0 for _, body in posted)
    moves = [
        (body["balance"]["available"] - delta, body["balance"]["available"])
        for delta, body in posted
    ]
    assert _is_serial_history(1000, final, moves), moves
    states = {1000} | {after for _, after in moves}
    for body in refused:
        seen = int(body["detail"].split(", ")[1].split()[0])  # "40 points needed, 25 there"
        assert seen < 40 and seen in states, body
    committed_together = await sql.fetchval(
        "SELECT max(n) FROM (SELECT count(*) AS n FROM transactions"
        " WHERE program_id = $1 GROUP BY recorded_at) t",
        program.id,
    )
    assert committed_together > 1
    ledger = await sql.fetchval(
        "SELECT sum(e.amount) FROM entries e JOIN accounts a"
        "  ON a.program_id = e.program_id AND a.id = e.account_id"
        " WHERE e.program_id = $1 AND a.member_id IS NOT NULL AND a.kind = 'available'",
        program.id,
    )
    assert ledger == final


def test_the_serial_history_check_itself() -> None:
    """Worked examples: 100 -> 60 -> 70 is serial whatever order the answers came in; an answer
    that saw a balance no one left (two redeems both seeing 100) is not."""
    assert _is_serial_history(100, 70, [(60, 70), (100, 60)])
    assert not _is_serial_history(100, 20, [(100, 60), (100, 60)])
    assert not _is_serial_history(100, 60, [(100, 60), (5, 15)])
    assert _is_serial_history(100, 100, [])
