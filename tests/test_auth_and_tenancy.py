"""Authentication, scopes, and invariant 6: no request reaches another program's data."""

from __future__ import annotations

import pytest

from tests.support import earn


async def test_missing_or_unknown_key_is_401(client, program):
    for headers in ({}, {"Authorization": "Bearer plk_nope_nope"}, {"Authorization": "Basic abc"}):
        response = await client.get("/v1/members/x", headers=headers)
        assert response.status_code == 401
        assert response.json()["code"] == "unauthorized"


@pytest.mark.parametrize(
    ("scope", "method", "path", "body", "allowed"),
    [
        ("read", "post", "/v1/earn", {"member": "s", "points": 1}, False),
        ("earn", "post", "/v1/earn", {"member": "s", "points": 1}, True),
        ("earn", "post", "/v1/redeem", {"member": "s", "points": 1}, False),
        ("redeem", "post", "/v1/redeem", {"member": "s", "points": 1}, True),
        ("earn", "get", "/v1/members/s", None, False),
        ("read", "get", "/v1/members/s", None, True),
        ("earn", "post", "/v1/adjustments", {"member": "s", "points": 1, "reason": "r"}, False),
        ("redeem", "post", "/v1/adjustments", {"member": "s", "points": 1, "reason": "r"}, False),
    ],
)
async def test_scopes(client, program, scope, method, path, body, allowed):
    await earn(client, program, "s", 10)
    key = await program.key_with(scope)
    headers = program.write_headers(api_key=key)
    response = await client.request(method, path, json=body, headers=headers)
    if allowed:
        assert response.status_code in (200, 201), response.text
    else:
        assert response.status_code == 403
        assert response.json()["code"] == "forbidden"


async def test_another_programs_member_is_404_not_403(client, program, other_program):
    await earn(client, other_program, "theirs", 100)
    assert (await client.get("/v1/members/theirs", headers=program.headers)).status_code == 404
    history = await client.get("/v1/members/theirs/transactions", headers=program.headers)
    assert history.status_code == 404
    redeem = await client.post(
        "/v1/redeem", json={"member": "theirs", "points": 1}, headers=program.write_headers()
    )
    assert redeem.status_code == 404
    their_balance = (await client.get("/v1/members/theirs", headers=other_program.headers)).json()[
        "balance"
    ]
    assert their_balance["available"] == 100


async def test_another_programs_transaction_is_404(client, program, other_program):
    theirs = (await earn(client, other_program, "t", 50)).json()["transaction_id"]
    response = await client.get(f"/v1/transactions/{theirs}", headers=program.headers)
    assert response.status_code == 404
    assert response.json()["code"] == "transaction_not_found"
    reverse = await client.post(
        f"/v1/transactions/{theirs}/reverse", headers=program.write_headers()
    )
    assert reverse.status_code == 404
    still = await client.get(f"/v1/transactions/{theirs}", headers=other_program.headers)
    assert still.json()["reversed_by"] is None


async def test_same_external_id_in_two_programs_are_two_members(client, program, other_program):
    await earn(client, program, "shared", 5)
    await earn(client, other_program, "shared", 7)
    mine = (await client.get("/v1/members/shared", headers=program.headers)).json()
    theirs = (await client.get("/v1/members/shared", headers=other_program.headers)).json()
    assert (mine["balance"]["available"], theirs["balance"]["available"]) == (5, 7)
