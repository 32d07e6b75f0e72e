"""Holds at checkout: authorize -> capture (all or part) / release / expiry."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from tests.support import available, earn


async def hold(client, program, member: str, points: int, **extra) -> httpx.Response:
    return await client.post(
        "/v1/holds",
        json={"member": member, "points": points, **extra},
        headers=program.write_headers(),
    )


async def balance(client, program, member: str) -> dict:
    response = await client.get(f"/v1/members/{member}", headers=program.headers)
    return response.json()["balance"]


async def test_hold_then_partial_capture(client, program):
    await earn(client, program, "ana", 100)
    created = await hold(client, program, "ana", 60, order_id="cart-1")
    assert created.status_code == 201, created.text
    body = created.json()
    assert (body["status"], body["points"], body["order_id"]) == ("open", 60, "cart-1")
    assert (body["balance"]["available"], body["balance"]["held"]) == (40, 60)

    captured = await client.post(
        f"/v1/holds/{body['hold_id']}/capture", json={"points": 45}, headers=program.write_headers()
    )
    assert captured.status_code == 200, captured.text
    result = captured.json()
    assert (result["status"], result["captured_points"]) == ("captured", 45)
    assert (result["balance"]["available"], result["balance"]["held"]) == (55, 0)
    order = (await client.get("/v1/orders/cart-1", headers=program.headers)).json()
    assert order["state"]["redeemed_points"] == 45


async def test_capture_all_by_default_and_release(client, program):
    await earn(client, program, "ben", 50)
    first = (await hold(client, program, "ben", 20)).json()
    second = (await hold(client, program, "ben", 30)).json()
    captured = await client.post(
        f"/v1/holds/{first['hold_id']}/capture", headers=program.write_headers()
    )
    assert captured.json()["captured_points"] == 20
    released = await client.post(
        f"/v1/holds/{second['hold_id']}/release", headers=program.write_headers()
    )
    assert released.json()["status"] == "released"
    final = await balance(client, program, "ben")
    assert (final["available"], final["held"]) == (30, 0)


async def test_a_hold_cannot_reserve_points_twice(client, program):
    await earn(client, program, "cy", 100)
    assert (await hold(client, program, "cy", 70)).status_code == 201
    second = await hold(client, program, "cy", 40)
    assert second.status_code == 409
    assert second.json()["code"] == "insufficient_points"
    redeem = await client.post(
        "/v1/redeem", json={"member": "cy", "points": 31}, headers=program.write_headers()
    )
    assert redeem.json()["code"] == "insufficient_points"


@pytest.mark.parametrize(
    ("first", "second", "code"),
    [
        ("capture", "capture", "hold_already_captured"),
        ("capture", "release", "hold_already_captured"),
        ("release", "capture", "hold_already_released"),
        ("release", "release", "hold_already_released"),
    ],
)
async def test_closing_a_closed_hold_is_a_conflict(client, program, first, second, code):
    await earn(client, program, "dee", 10)
    hold_id = (await hold(client, program, "dee", 10)).json()["hold_id"]
    done = await client.post(f"/v1/holds/{hold_id}/{first}", headers=program.write_headers())
    assert done.status_code == 200
    again = await client.post(f"/v1/holds/{hold_id}/{second}", headers=program.write_headers())
    assert again.status_code == 409
    assert again.json()["code"] == code
    assert await available(client, program, "dee") == (0 if first == "capture" else 10)


async def test_capture_and_release_are_idempotent(client, program):
    await earn(client, program, "eli", 10)
    hold_id = (await hold(client, program, "eli", 10)).json()["hold_id"]
    headers = program.write_headers()
    first = await client.post(f"/v1/holds/{hold_id}/capture", json={"points": 4}, headers=headers)
    replay = await client.post(f"/v1/holds/{hold_id}/capture", json={"points": 4}, headers=headers)
    assert replay.content == first.content
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert await available(client, program, "eli") == 6


async def test_capture_more_than_the_hold_is_refused(client, program):
    await earn(client, program, "fox", 10)
    hold_id = (await hold(client, program, "fox", 5)).json()["hold_id"]
    response = await client.post(
        f"/v1/holds/{hold_id}/capture", json={"points": 6}, headers=program.write_headers()
    )
    assert response.status_code == 422
    assert response.json()["code"] == "capture_exceeds_hold"
    assert (await balance(client, program, "fox"))["held"] == 5


async def test_another_programs_hold_is_404(client, program, other_program):
    await earn(client, other_program, "gus", 10)
    hold_id = (await hold(client, other_program, "gus", 5)).json()["hold_id"]
    for action in ("capture", "release"):
        response = await client.post(
            f"/v1/holds/{hold_id}/{action}", headers=program.write_headers()
        )
        assert response.status_code == 404
        assert response.json()["code"] == "hold_not_found"
    assert (await client.get(f"/v1/holds/{hold_id}", headers=program.headers)).status_code == 404


async def test_an_expired_hold_is_released_lazily_on_read_and_write(client, program):
    await earn(client, program, "hal", 30)
    hold_id = (await hold(client, program, "hal", 30, expires_in=1)).json()["hold_id"]
    assert (await balance(client, program, "hal"))["held"] == 30
    await asyncio.sleep(1.2)
    # a read releases it (no worker running)
    after = await balance(client, program, "hal")
    assert (after["available"], after["held"]) == (30, 0)
    capture = await client.post(f"/v1/holds/{hold_id}/capture", headers=program.write_headers())
    assert capture.status_code == 409
    assert capture.json()["code"] == "hold_expired"
    view = (await client.get(f"/v1/holds/{hold_id}", headers=program.headers)).json()
    assert view["status"] == "expired"

    # and a write does too, before it spends
    second = (await hold(client, program, "hal", 30, expires_in=1)).json()["hold_id"]
    await asyncio.sleep(1.2)
    redeem = await client.post(
        "/v1/redeem", json={"member": "hal", "points": 30}, headers=program.write_headers()
    )
    assert redeem.status_code == 201, redeem.text
    assert (await client.get(f"/v1/holds/{second}", headers=program.headers)).json()["status"] == (
        "expired"
    )


async def test_concurrent_holds_and_redeems_never_reserve_more_than_is_there(live_server, program):
    limits = httpx.Limits(max_connections=40)
    async with httpx.AsyncClient(base_url=live_server.base_url, limits=limits, timeout=60) as http:
        await earn(http, program, "ivy", 500)

        async def one(i: int) -> httpx.Response:
            if i % 2:
                return await hold(http, program, "ivy", 30)
            return await http.post(
                "/v1/redeem", json={"member": "ivy", "points": 30}, headers=program.write_headers()
            )

        results = await asyncio.gather(*(one(i) for i in range(40)))
        ok = [r for r in results if r.status_code == 201]
        assert len(ok) == 500 // 30
        assert {r.json()["code"] for r in results if r.status_code != 201} == {
            "insufficient_points"
        }
        final = (await http.get("/v1/members/ivy", headers=program.headers)).json()["balance"]
        holds_ok = sum(1 for r in ok if r.request.url.path == "/v1/holds")
        assert final["held"] == 30 * holds_ok
        assert final["available"] == 500 - 30 * len(ok)
