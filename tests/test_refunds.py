"""Pending points, refunds and cancellations, under both return policies.

Worked examples: a program earning 1 point per euro, orders in EUR cents.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from tests.conftest import make_program
from tests.support import available, earn, move_clock, redeem


async def order_earn(client, program, member: str, order_id: str, amount: int, **extra):
    response = await client.post(
        "/v1/earn",
        json={"member": member, "order": {"id": order_id, "amount": amount, "currency": "EUR"}}
        | extra,
        headers=program.write_headers(),
    )
    assert response.status_code == 201, response.text
    return response.json()


async def refund(client, program, order_id: str, amount: int, currency: str = "EUR"):
    return await client.post(
        f"/v1/orders/{order_id}/refunds",
        json={"amount": amount, "currency": currency},
        headers=program.write_headers(),
    )


async def member(client, program, external_id: str) -> dict:
    return (await client.get(f"/v1/members/{external_id}", headers=program.headers)).json()


async def test_order_points_wait_out_the_return_window(client, database):
    program = await make_program(database, pending_days=14)
    body = await order_earn(client, program, "amy", "o-1", 10_000)
    assert body["balance"]["pending"] == 100
    assert body["balance"]["available"] == 0
    seen = await member(client, program, "amy")
    assert len(seen["pending_lots"]) == 1
    lot = seen["pending_lots"][0]
    assert (lot["points"], lot["order_id"]) == (100, "o-1")
    available_at = datetime.fromisoformat(lot["available_at"])
    assert timedelta(days=13, hours=23) < available_at - datetime.now(UTC) <= timedelta(days=14)
    refused = await redeem(client, program, "amy", 1)
    assert refused.json()["code"] == "insufficient_points"
    # points without an order are spendable at once
    await earn(client, program, "amy", 5)
    assert await available(client, program, "amy") == 5


async def test_a_sale_synced_after_its_window_is_available_at_once(client, database):
    program = await make_program(database, pending_days=7)
    long_ago = (datetime.now(UTC) - timedelta(days=8)).isoformat()
    body = await order_earn(client, program, "bo", "o-1", 5_000, occurred_at=long_ago)
    assert (body["balance"]["available"], body["balance"]["pending"]) == (50, 0)


async def test_pending_points_become_available_lazily_when_due(client, database, sql):
    program = await make_program(database, pending_days=7)
    await order_earn(client, program, "cat", "o-1", 3_000)
    # time passes: the window ends
    await move_clock(
        sql,
        program.id,
        "UPDATE pending_lots SET release_at = now() - interval '1 second' WHERE program_id = $1",
        program.id,
    )
    seen = await member(client, program, "cat")
    assert (seen["balance"]["available"], seen["balance"]["pending"]) == (30, 0)
    assert seen["pending_lots"] == []
    kinds = [
        item["kind"]
        for item in (
            await client.get("/v1/members/cat/transactions", headers=program.headers)
        ).json()["items"]
    ]
    assert kinds == ["settle", "earn"]


async def test_partial_refunds_take_back_in_proportion_and_add_up(client, program):
    """EUR 100.00 earned 100 points; three refunds of 33.33, 33.33 and 33.34 take back
    floor(33.33) = 33, then floor(66.66) - 33 = 33, then 100 - 66 = 34: exactly 100."""
    await order_earn(client, program, "dan", "o-1", 10_000)
    responses = [await refund(client, program, "o-1", amount) for amount in (3_333, 3_333, 3_334)]
    assert [r.status_code for r in responses] == [201, 201, 201]
    assert [r.json()["points_taken_back"] for r in responses] == [33, 33, 34]
    assert await available(client, program, "dan") == 0
    too_much = await refund(client, program, "o-1", 1)
    assert too_much.status_code == 409
    assert too_much.json()["code"] == "refund_exceeds_order"
    order = (await client.get("/v1/orders/o-1", headers=program.headers)).json()["state"]
    assert (order["refunded_amount"], order["points_taken_back"]) == (10_000, 100)


async def test_refund_takes_pending_points_first(client, database):
    program = await make_program(database, pending_days=30)
    await earn(client, program, "eve", 40)  # available, not from the order
    await order_earn(client, program, "eve", "o-1", 10_000)  # 100 pending
    response = await refund(client, program, "o-1", 5_000)
    body = response.json()
    assert body["points_taken_back"] == 50
    assert (body["balance"]["pending"], body["balance"]["available"]) == (50, 40)


async def test_cap_at_zero_writes_off_what_was_already_spent(client, program):
    await order_earn(client, program, "fay", "o-1", 10_000)  # 100 points
    await redeem(client, program, "fay", 80)
    body = (await refund(client, program, "o-1", 10_000)).json()
    assert (body["points_taken_back"], body["points_written_off"]) == (20, 80)
    assert body["balance"]["available"] == 0
    assert body["order"]["points_written_off"] == 80
    await earn(client, program, "fay", 10)
    assert await available(client, program, "fay") == 10  # nothing owed


async def test_allow_negative_puts_the_member_in_debt_and_earns_repay_it(client, database):
    program = await make_program(database, return_policy="allow_negative")
    await order_earn(client, program, "gil", "o-1", 10_000)  # 100 points
    await redeem(client, program, "gil", 80)
    body = (await refund(client, program, "o-1", 10_000)).json()
    assert (body["points_taken_back"], body["points_written_off"]) == (100, 0)
    assert body["balance"]["available"] == -80
    assert body["balance"]["available_value"] == {"amount": -80, "currency": "EUR"}
    refused = await redeem(client, program, "gil", 1)
    assert refused.json()["code"] == "insufficient_points"
    await earn(client, program, "gil", 50)
    assert await available(client, program, "gil") == -30
    await earn(client, program, "gil", 50)
    assert await available(client, program, "gil") == 20
    assert (await redeem(client, program, "gil", 20)).status_code == 201


async def test_refund_before_and_after_the_pending_window(client, database, sql):
    program = await make_program(database, pending_days=14, return_policy="allow_negative")
    await order_earn(client, program, "hugo", "early", 10_000)
    early = (await refund(client, program, "early", 2_500)).json()
    assert early["points_taken_back"] == 25
    assert (early["balance"]["pending"], early["balance"]["available"]) == (75, 0)

    await order_earn(client, program, "hugo", "late", 10_000)
    await move_clock(
        sql,
        program.id,
        "UPDATE pending_lots SET release_at = now() - interval '1 second' WHERE program_id = $1",
        program.id,
    )
    late = (await refund(client, program, "late", 10_000)).json()
    # both lots became available (175) before the refund took back 100 of them
    assert late["points_taken_back"] == 100
    assert (late["balance"]["pending"], late["balance"]["available"]) == (0, 75)


async def test_cancel_refunds_the_rest_and_gives_back_redeemed_points(client, program):
    await earn(client, program, "ida", 500)
    await order_earn(client, program, "ida", "o-1", 20_000)  # 200 points
    spent = await redeem(client, program, "ida", 300, order_id="o-1")
    assert spent.status_code == 201
    await refund(client, program, "o-1", 5_000)  # takes back 50
    response = await client.post("/v1/orders/o-1/cancel", headers=program.write_headers())
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["points_taken_back"] == 150
    assert body["redeemed_points_returned"] == 300
    assert body["order"]["cancelled"] is True
    assert body["balance"]["available"] == 500
    again = await client.post("/v1/orders/o-1/cancel", headers=program.write_headers())
    assert again.json()["code"] == "order_cancelled"
    late_refund = await refund(client, program, "o-1", 1)
    assert late_refund.json()["code"] == "order_cancelled"


async def test_refund_rules(client, program, other_program):
    missing = await refund(client, program, "nope", 100)
    assert (missing.status_code, missing.json()["code"]) == (404, "order_not_found")
    await order_earn(client, other_program, "jo", "theirs", 1_000)
    foreign = await refund(client, program, "theirs", 100)
    assert foreign.status_code == 404
    await order_earn(client, program, "jo", "o-1", 1_000)
    wrong_currency = await refund(client, program, "o-1", 100, currency="USD")
    assert wrong_currency.json()["code"] == "currency_mismatch"
    twice = await client.post(
        "/v1/earn",
        json={"member": "jo", "order": {"id": "o-1", "amount": 1_000, "currency": "EUR"}},
        headers=program.write_headers(),
    )
    assert (twice.status_code, twice.json()["code"]) == (409, "order_already_earned")
    other_member = await client.post(
        "/v1/redeem",
        json={"member": "someone", "points": 1, "order_id": "o-1"},
        headers=program.write_headers(),
    )
    assert other_member.status_code in (404, 409)


async def test_replaying_a_refund_posts_nothing(client, program):
    await order_earn(client, program, "kim", "o-1", 10_000)
    headers = program.write_headers()
    body = {"amount": 4_000, "currency": "EUR"}
    first = await client.post("/v1/orders/o-1/refunds", json=body, headers=headers)
    replay = await client.post("/v1/orders/o-1/refunds", json=body, headers=headers)
    assert replay.content == first.content
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert await available(client, program, "kim") == 60
