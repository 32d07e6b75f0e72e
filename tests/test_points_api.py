"""Earning, redeeming, adjusting, reversing and reading, over HTTP."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from tests.conftest import make_program
from tests.support import available, earn, redeem


async def test_earn_from_an_order_uses_the_base_rate_rounded_down(client, database):
    program = await make_program(database, base_rate=Decimal("2.5"))
    response = await client.post(
        "/v1/earn",
        json={"member": "ann", "order": {"id": "o-1", "amount": 1299, "currency": "EUR"}},
        headers=program.write_headers(),
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["points"] == 32  # EUR 12.99 x 2.5 = 32.475, rounded down
    assert body["member"] == "ann"
    balance = body["balance"]
    assert (balance["available"], balance["pending"], balance["held"]) == (32, 0, 0)
    assert balance["available_value"] == {"amount": 32, "currency": "EUR"}
    transaction = (
        await client.get(f"/v1/transactions/{body['transaction_id']}", headers=program.headers)
    ).json()
    assert transaction["order_id"] == "o-1"
    assert transaction["kind"] == "earn"
    assert sorted(e["amount"] for e in transaction["entries"]) == [-32, 32]


async def test_earn_in_a_yen_program_has_no_minor_unit(client, database):
    program = await make_program(database, currency="JPY")
    response = await client.post(
        "/v1/earn",
        json={"member": "ken", "order": {"id": "o-1", "amount": 1500, "currency": "JPY"}},
        headers=program.write_headers(),
    )
    assert response.json()["points"] == 1500


async def test_order_in_another_currency_is_refused(client, program):
    response = await client.post(
        "/v1/earn",
        json={"member": "ann", "order": {"id": "o-1", "amount": 1000, "currency": "USD"}},
        headers=program.write_headers(),
    )
    assert response.status_code == 422
    assert response.json()["code"] == "currency_mismatch"


async def test_an_order_too_small_to_earn_is_refused_clearly(client, program):
    response = await client.post(
        "/v1/earn",
        json={"member": "ann", "order": {"id": "o-1", "amount": 99, "currency": "EUR"}},
        headers=program.write_headers(),
    )
    assert response.status_code == 422
    assert response.json()["code"] == "nothing_to_earn"


async def test_first_earn_enrols_the_member(client, program):
    assert (await client.get("/v1/members/newbie", headers=program.headers)).status_code == 404
    assert (await earn(client, program, "newbie", 15)).status_code == 201
    member = (await client.get("/v1/members/newbie", headers=program.headers)).json()
    assert member["external_id"] == "newbie"
    assert member["balance"]["available"] == 15


async def test_enrol_returns_201_then_200_with_the_same_member(client, program):
    body = {"external_id": "bea", "birthday": "1990-05-01", "attributes": {"email": "b@x.io"}}
    created = await client.post("/v1/members", json=body, headers=program.write_headers())
    assert created.status_code == 201
    assert created.json()["attributes"] == {"email": "b@x.io"}
    existing = await client.post(
        "/v1/members", json={"external_id": "bea"}, headers=program.write_headers()
    )
    assert existing.status_code == 200
    assert existing.json() == created.json()


async def test_redeem_spends_and_refuses_overdraft(client, program):
    await earn(client, program, "cid", 100)
    spent = await redeem(client, program, "cid", 60, order_id="o-9")
    assert spent.status_code == 201
    assert spent.json()["points"] == 60
    assert spent.json()["balance"]["available"] == 40
    refused = await redeem(client, program, "cid", 41)
    assert refused.status_code == 409
    assert refused.json()["code"] == "insufficient_points"
    assert await available(client, program, "cid") == 40


async def test_redeem_for_an_unknown_member_is_404(client, program):
    response = await redeem(client, program, "ghost", 1)
    assert response.status_code == 404
    assert response.json()["code"] == "member_not_found"
    assert (await client.get("/v1/members/ghost", headers=program.headers)).status_code == 404


async def test_adjustments_are_signed_and_cannot_overdraw(client, program):
    await earn(client, program, "dan", 10)
    up = await client.post(
        "/v1/adjustments",
        json={"member": "dan", "points": 5, "reason": "goodwill"},
        headers=program.write_headers(),
    )
    assert up.status_code == 201
    assert up.json()["balance"]["available"] == 15
    down = await client.post(
        "/v1/adjustments",
        json={"member": "dan", "points": -15, "reason": "fraud"},
        headers=program.write_headers(),
    )
    assert down.json()["balance"]["available"] == 0
    too_far = await client.post(
        "/v1/adjustments",
        json={"member": "dan", "points": -1, "reason": "oops"},
        headers=program.write_headers(),
    )
    assert too_far.json()["code"] == "insufficient_points"
    transaction = (
        await client.get(
            f"/v1/transactions/{down.json()['transaction_id']}", headers=program.headers
        )
    ).json()
    assert transaction["reason"] == "fraud"
    assert transaction["points"] == -15


async def test_reverse_posts_the_exact_opposite_once(client, program):
    await earn(client, program, "eve", 100)
    spent = (await redeem(client, program, "eve", 30)).json()
    reversal = await client.post(
        f"/v1/transactions/{spent['transaction_id']}/reverse",
        json={"reason": "order cancelled"},
        headers=program.write_headers(),
    )
    assert reversal.status_code == 201, reversal.text
    body = reversal.json()
    assert body["kind"] == "reverse"
    assert body["reverses"] == spent["transaction_id"]
    assert body["points"] == 30
    original = (
        await client.get(f"/v1/transactions/{spent['transaction_id']}", headers=program.headers)
    ).json()
    assert original["reversed_by"] == body["id"]
    assert sorted((e["account_id"], -e["amount"]) for e in original["entries"]) == sorted(
        (e["account_id"], e["amount"]) for e in body["entries"]
    )
    assert await available(client, program, "eve") == 100

    again = await client.post(
        f"/v1/transactions/{spent['transaction_id']}/reverse", headers=program.write_headers()
    )
    assert again.status_code == 409
    assert again.json()["code"] == "already_reversed"
    of_reversal = await client.post(
        f"/v1/transactions/{body['id']}/reverse", headers=program.write_headers()
    )
    assert of_reversal.status_code == 409
    assert of_reversal.json()["code"] == "not_reversible"
    assert await available(client, program, "eve") == 100


async def test_reversing_an_earn_already_spent_is_refused(client, program):
    earned = (await earn(client, program, "fin", 50)).json()
    await redeem(client, program, "fin", 40)
    response = await client.post(
        f"/v1/transactions/{earned['transaction_id']}/reverse", headers=program.write_headers()
    )
    assert response.status_code == 409
    assert response.json()["code"] == "insufficient_points"
    assert await available(client, program, "fin") == 10


async def test_history_is_newest_first_and_keyset_paginated(client, program):
    expected = []
    for points in (1, 2, 3, 4, 5):
        expected.append((await earn(client, program, "gil", points)).json()["transaction_id"])
    spent = (await redeem(client, program, "gil", 4)).json()["transaction_id"]
    await earn(client, program, "someone-else", 9)
    seen: list[tuple[int, int]] = []
    cursor = None
    pages = 0
    while True:
        params = {"limit": 2} | ({"cursor": cursor} if cursor else {})
        page = (
            await client.get("/v1/members/gil/transactions", params=params, headers=program.headers)
        ).json()
        pages += 1
        seen += [(item["id"], item["points"]) for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert [i for i, _ in seen] == [spent, *reversed(expected)]
    assert seen[0][1] == -4
    assert [p for _, p in seen[1:]] == [5, 4, 3, 2, 1]
    assert pages == 3  # six items, two per page: no empty fourth page


async def test_backdated_earn_keeps_its_business_time(client, program):
    when = datetime.now(UTC) - timedelta(days=3)
    response = await earn(client, program, "hal", 10, occurred_at=when.isoformat())
    transaction = (
        await client.get(
            f"/v1/transactions/{response.json()['transaction_id']}", headers=program.headers
        )
    ).json()
    assert datetime.fromisoformat(transaction["occurred_at"]) == when
    assert datetime.fromisoformat(transaction["recorded_at"]) > when


async def test_business_time_outside_the_window_is_refused(client, program):
    for when in (datetime.now(UTC) - timedelta(days=31), datetime.now(UTC) + timedelta(hours=1)):
        response = await earn(client, program, "ivy", 10, occurred_at=when.isoformat())
        assert response.status_code == 422
        assert response.json()["code"] == "occurred_at_out_of_range"
    naive = await earn(client, program, "ivy", 10, occurred_at="2026-11-01T10:00:00")
    assert naive.status_code == 422


async def test_health_and_readiness(client):
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    assert (await client.get("/readyz")).json() == {"status": "ok"}
