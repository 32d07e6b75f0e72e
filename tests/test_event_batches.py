"""Batch ingestion: one transaction, per-event answers, one bad event never rejects others."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from tests.support import available, run_cli


async def post(client, program, events, api_key=None):
    headers = {"Authorization": f"Bearer {api_key or program.api_key}"}
    return await client.post("/v1/events/batch", json={"events": events}, headers=headers)


async def test_mixed_batch_answers_per_event_in_order(client, program, sql):
    events = [
        {"id": "e1", "type": "earn", "member": "ann", "points": 100, "store_id": "s-1"},
        {"id": "e2", "type": "redeem", "member": "ann", "points": 30},  # sees e1 before it
        {"id": "e3", "type": "redeem", "member": "ann", "points": 500},  # too much
        {"id": "e4", "type": "redeem", "member": "nobody", "points": 1},
        {"id": "e5", "type": "earn", "member": "ann", "points": -1},  # malformed
        {"type": "earn", "member": "ann", "points": 1},  # no id
        {
            "id": "e7",
            "type": "earn",
            "member": "ann",
            "order": {"id": "o", "amount": 5_000, "currency": "USD"},
        },
        {"id": "e8", "type": "gift", "member": "ann", "points": 1},
        {"id": "e9", "type": "earn", "member": "bob", "points": 7, "terminal_id": "till-3"},
    ]
    response = await post(client, program, events)
    assert response.status_code == 200, response.text
    body = response.json()
    statuses = [(r["id"], r["status"]) for r in body["results"]]
    assert statuses == [
        ("e1", "posted"),
        ("e2", "posted"),
        ("e3", "rejected"),
        ("e4", "rejected"),
        ("e5", "rejected"),
        (None, "rejected"),
        ("e7", "rejected"),
        ("e8", "rejected"),
        ("e9", "posted"),
    ]
    codes = [r["problem"]["code"] if r["problem"] else None for r in body["results"]]
    assert codes == [
        None,
        None,
        "insufficient_points",
        "member_not_found",
        "validation_error",
        "validation_error",
        "currency_mismatch",
        "validation_error",
        None,
    ]
    assert (body["posted"], body["duplicate"], body["rejected"]) == (3, 0, 6)
    assert body["results"][1]["balance"]["available"] == 70
    assert await available(client, program, "ann") == 70
    assert await available(client, program, "bob") == 7
    row = await sql.fetchrow(
        "SELECT store_id FROM transactions WHERE id = $1", body["results"][0]["transaction_id"]
    )
    assert row["store_id"] == "s-1"


async def test_duplicates_within_and_across_batches_post_once(client, program):
    sale = {"id": "pos-1", "type": "earn", "member": "cy", "points": 10}
    first = (await post(client, program, [sale, sale])).json()
    assert [r["status"] for r in first["results"]] == ["posted", "duplicate"]
    assert first["results"][0]["transaction_id"] == first["results"][1]["transaction_id"]
    again = (await post(client, program, [sale])).json()
    assert again["results"][0]["status"] == "duplicate"
    assert again["results"][0]["transaction_id"] == first["results"][0]["transaction_id"]
    assert await available(client, program, "cy") == 10
    changed = (await post(client, program, [sale | {"points": 11}])).json()
    assert changed["results"][0]["problem"]["code"] == "idempotency_conflict"
    # the event id is an idempotency key: the single endpoint replays it too
    single = await client.post(
        "/v1/earn",
        json={"member": "cy", "points": 10},
        headers={**program.headers, "Idempotency-Key": "pos-1"},
    )
    assert single.headers["Idempotent-Replayed"] == "true"
    assert await available(client, program, "cy") == 10


async def test_a_thousand_events_in_one_batch(client, program, sql):
    events = [
        {"id": f"big-{i}", "type": "earn", "member": f"m{i % 50}", "points": 1 + i % 7}
        for i in range(1000)
    ]
    body = (await post(client, program, events)).json()
    assert body["posted"] == 1000
    total = await sql.fetchval(
        "SELECT sum(balance) FROM accounts WHERE program_id = $1 AND kind = 'available'"
        " AND asset = 'points'",
        program.id,
    )
    assert total == sum(1 + i % 7 for i in range(1000))
    too_many = await post(client, program, [*events, events[0]])
    assert too_many.status_code == 422


async def test_late_and_out_of_order_pos_sales(client, program):
    now = datetime.now(UTC)
    events = [
        {
            "id": "late-2",
            "type": "redeem",
            "member": "dee",
            "points": 5,
            "occurred_at": (now - timedelta(days=1)).isoformat(),
        },
        {
            "id": "late-1",
            "type": "earn",
            "member": "dee",
            "points": 20,
            "occurred_at": (now - timedelta(days=2)).isoformat(),
        },
        {
            "id": "late-3",
            "type": "redeem",
            "member": "dee",
            "points": 5,
            "occurred_at": (now - timedelta(days=1)).isoformat(),
        },
        {
            "id": "ancient",
            "type": "earn",
            "member": "dee",
            "points": 5,
            "occurred_at": (now - timedelta(days=45)).isoformat(),
        },
    ]
    body = (await post(client, program, events)).json()
    assert [r["status"] for r in body["results"]] == ["rejected", "posted", "posted", "rejected"]
    assert body["results"][0]["problem"]["code"] == "member_not_found"  # not enrolled yet
    assert body["results"][3]["problem"]["code"] == "occurred_at_out_of_range"
    # the till retries the refused event later, under the same id: a declined request keeps
    # its answer (the member exists by now, yet nothing posts) ...
    retry = (await post(client, program, [events[0]])).json()
    assert retry["results"][0]["status"] == "rejected"
    assert retry["results"][0]["problem"]["code"] == "member_not_found"
    assert await available(client, program, "dee") == 15
    # ... and a new event id is a new request, which posts
    again = (await post(client, program, [{**events[0], "id": "late-2-again"}])).json()
    assert again["results"][0]["status"] == "posted"
    assert await available(client, program, "dee") == 10


async def test_batch_needs_earn_and_redeem(client, program):
    earn_only = await program.key_with("earn")
    response = await post(
        client,
        program,
        [{"id": "x", "type": "earn", "member": "a", "points": 1}],
        api_key=earn_only,
    )
    assert response.status_code == 403
    both = await program.key_with("earn", "redeem")
    ok = await post(
        client, program, [{"id": "x", "type": "earn", "member": "a", "points": 1}], api_key=both
    )
    assert ok.status_code == 200


async def test_verify_after_batches(client, program, database_url):
    events = [{"id": f"v{i}", "type": "earn", "member": "vic", "points": 3} for i in range(20)]
    events += [{"id": f"w{i}", "type": "redeem", "member": "vic", "points": 4} for i in range(20)]
    body = (await post(client, program, events)).json()
    assert body["posted"] == 20 + 15
    assert (await run_cli(database_url, "verify")).returncode == 0
