"""Invariant 4: every write carries an idempotency key; a replay posts nothing."""

from __future__ import annotations

import asyncio

from tests.support import available, earn, new_key


async def _count_transactions(database, program) -> int:
    async with database.single() as db:
        count: int = await db.fetchval(
            "SELECT count(*) FROM transactions WHERE program_id = $1", program.id
        )
    return count


async def test_replay_returns_the_original_response_and_posts_nothing(client, program, database):
    headers = program.write_headers()
    body = {"member": "alice", "points": 120, "metadata": {"channel": "web"}}
    first = await client.post("/v1/earn", json=body, headers=headers)
    assert first.status_code == 201
    assert "Idempotent-Replayed" not in first.headers

    await earn(client, program, "alice", 5)  # the balance moves on in between
    replay = await client.post("/v1/earn", json=body, headers=headers)
    assert replay.status_code == 201
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert replay.content == first.content
    assert await available(client, program, "alice") == 125
    assert await _count_transactions(database, program) == 2


async def test_same_key_with_a_different_body_is_a_conflict(client, program, database):
    headers = program.write_headers()
    assert (
        await client.post("/v1/earn", json={"member": "a", "points": 1}, headers=headers)
    ).status_code == 201
    response = await client.post("/v1/earn", json={"member": "a", "points": 2}, headers=headers)
    assert response.status_code == 409
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == "idempotency_conflict"
    # also across endpoints: the key names one write, whatever its endpoint
    response = await client.post("/v1/redeem", json={"member": "a", "points": 1}, headers=headers)
    assert response.json()["code"] == "idempotency_conflict"
    assert await available(client, program, "a") == 1
    assert await _count_transactions(database, program) == 1


async def test_every_write_needs_a_key(client, program):
    writes = [
        ("/v1/earn", {"member": "a", "points": 1}),
        ("/v1/redeem", {"member": "a", "points": 1}),
        ("/v1/adjustments", {"member": "a", "points": 1, "reason": "x"}),
        ("/v1/members", {"external_id": "a"}),
        ("/v1/transactions/1/reverse", {}),
    ]
    for path, body in writes:
        response = await client.post(path, json=body, headers=program.headers)
        assert response.status_code == 400, path
        assert response.json()["code"] == "idempotency_key_missing"


async def test_keys_are_scoped_to_their_program(client, program, other_program):
    key = new_key()
    for owner in (program, other_program):
        response = await client.post(
            "/v1/earn", json={"member": "m", "points": 7}, headers=owner.write_headers(key)
        )
        assert response.status_code == 201
        assert "Idempotent-Replayed" not in response.headers
    assert await available(client, program, "m") == 7
    assert await available(client, other_program, "m") == 7


async def test_a_declined_request_keeps_its_answer_after_the_balance_grows(client, program):
    """A redeem refused for a business reason reached the ledger: its 409 is its answer, kept
    under its key. Replaying the key after the member earned enough answers the same 409 and
    posts nothing (the client was told "declined"); a new key is a new request."""
    headers = program.write_headers()
    body = {"member": "dave", "points": 50}
    await earn(client, program, "dave", 10)
    declined = await client.post("/v1/redeem", json=body, headers=headers)
    assert declined.status_code == 409
    assert declined.json()["code"] == "insufficient_points"
    await earn(client, program, "dave", 40)
    replay = await client.post("/v1/redeem", json=body, headers=headers)
    assert (replay.status_code, replay.json()) == (409, declined.json())
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert await available(client, program, "dave") == 50
    fresh = await client.post("/v1/redeem", json=body, headers=program.write_headers())
    assert fresh.status_code == 201, fresh.text
    assert await available(client, program, "dave") == 0


async def test_a_request_refused_before_the_ledger_stores_nothing(client, program):
    """Bad input never reaches the ledger: nothing is kept, and the key is free for the
    corrected request."""
    headers = program.write_headers()
    bad = await client.post("/v1/earn", json={"member": "dot", "points": -5}, headers=headers)
    assert bad.status_code == 422
    good = await client.post("/v1/earn", json={"member": "dot", "points": 5}, headers=headers)
    assert good.status_code == 201, good.text
    assert "Idempotent-Replayed" not in good.headers
    assert await available(client, program, "dot") == 5


async def test_concurrent_requests_with_one_key_post_once(client, program, database):
    headers = program.write_headers()
    body = {"member": "erin", "points": 10}
    responses = await asyncio.gather(
        *(client.post("/v1/earn", json=body, headers=headers) for _ in range(20))
    )
    assert {r.status_code for r in responses} == {201}
    assert len({r.content for r in responses}) == 1
    assert sum(r.headers.get("Idempotent-Replayed") == "true" for r in responses) == 19
    assert await available(client, program, "erin") == 10
    assert await _count_transactions(database, program) == 1


async def test_member_enrolment_and_reversal_replay(client, program):
    headers = program.write_headers()
    first = await client.post("/v1/members", json={"external_id": "fay"}, headers=headers)
    again = await client.post("/v1/members", json={"external_id": "fay"}, headers=headers)
    assert (first.status_code, again.status_code) == (201, 201)
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.content == first.content

    transaction_id = (await earn(client, program, "fay", 30)).json()["transaction_id"]
    reverse_headers = program.write_headers()
    path = f"/v1/transactions/{transaction_id}/reverse"
    reversal = await client.post(path, headers=reverse_headers)
    replay = await client.post(path, headers=reverse_headers)
    assert reversal.status_code == replay.status_code == 201
    assert replay.content == reversal.content
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert await available(client, program, "fay") == 0
