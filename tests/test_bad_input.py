"""Bad input is a 4xx problem+json that changes nothing — never a 500."""

from __future__ import annotations

import pytest

from tests.support import earn

MAX = 2**53 - 1

BAD_EARNS = [
    ({"member": "m", "points": 0}, 422),
    ({"member": "m", "points": -5}, 422),
    ({"member": "m", "points": MAX + 1}, 422),
    ({"member": "m", "points": 2**64}, 422),
    ({"member": "m", "points": "10"}, 422),
    ({"member": "m", "points": 10.0}, 422),
    ({"member": "m", "points": 10.5}, 422),
    ({"member": "m", "points": True}, 422),
    ({"member": "m", "points": None}, 422),
    ({"member": "m"}, 422),
    ({"member": 42, "points": 1}, 422),
    ({"member": "", "points": 1}, 422),
    ({"member": "has space", "points": 1}, 422),
    ({"member": "nul\u0000", "points": 1}, 422),
    ({"member": "x" * 129, "points": 1}, 422),
    ({"member": "m", "points": 1, "unknown": 1}, 422),
    ({"member": "m", "points": 1, "metadata": {"k": "\u0000"}}, 422),
    ({"member": "m", "points": 1, "metadata": {"k": {"nested": 1}}}, 422),
    ({"member": "m", "points": 1, "metadata": {"k": 1.5}}, 422),
    ({"member": "m", "points": 1, "metadata": ["a"]}, 422),
    ({"member": "m", "points": 1, "occurred_at": "yesterday"}, 422),
    ({"member": "m", "order": {"id": "o", "amount": 100, "currency": "ZZZ"}}, 422),
    ({"member": "m", "order": {"id": "o", "amount": 100, "currency": "eur"}}, 422),
    ({"member": "m", "order": {"id": "o", "amount": -100, "currency": "EUR"}}, 422),
    ({"member": "m", "order": {"id": "o", "amount": MAX + 1, "currency": "EUR"}}, 422),
    ({"member": "m", "order": {"id": "o", "amount": 100, "currency": "EUR", "x": 1}}, 422),
    ({"member": "m", "order": {"amount": 100, "currency": "EUR"}}, 422),
    ([], 422),
    ("points", 422),
]


async def _ledger_size(database, program) -> tuple[int, int]:
    async with database.single() as db:
        row = await db.fetchrow(
            "SELECT (SELECT count(*) FROM transactions WHERE program_id = $1),"
            " (SELECT count(*) FROM members WHERE program_id = $1)",
            program.id,
        )
    return row[0], row[1]


@pytest.mark.parametrize(("body", "status"), BAD_EARNS)
async def test_bad_earns_are_refused_without_effect(client, program, database, body, status):
    response = await client.post("/v1/earn", json=body, headers=program.write_headers())
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["status"] == status
    assert problem["code"] == "validation_error"
    assert problem["type"].endswith("/validation_error")
    assert await _ledger_size(database, program) == (0, 0)


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/redeem", {"member": "m", "points": 0}),
        ("/v1/redeem", {"member": "m", "points": 1, "order_id": ""}),
        ("/v1/adjustments", {"member": "m", "points": 0, "reason": "x"}),
        ("/v1/adjustments", {"member": "m", "points": 5}),
        ("/v1/adjustments", {"member": "m", "points": -MAX - 1, "reason": "x"}),
        ("/v1/members", {"external_id": "m", "birthday": "not-a-date"}),
        ("/v1/members", {"external_id": "m", "email": "x"}),
        ("/v1/transactions/1/reverse", {"reason": ""}),
    ],
)
async def test_bad_bodies_on_every_write(client, program, database, path, body):
    response = await client.post(path, json=body, headers=program.write_headers())
    assert response.status_code == 422, response.text
    assert response.json()["code"] == "validation_error"
    assert await _ledger_size(database, program) == (0, 0)


async def test_malformed_json_is_400(client, program):
    response = await client.post(
        "/v1/earn",
        content=b'{"member": "m", "points": ',
        headers=program.write_headers() | {"Content-Type": "application/json"},
    )
    assert response.status_code == 400
    assert response.json()["code"] == "malformed_json"


async def test_oversized_bodies_are_413(client, program):
    huge = b'{"member": "m", "points": 1, "metadata": {"k": "' + b"x" * 2_000_000 + b'"}}'
    response = await client.post(
        "/v1/earn",
        content=huge,
        headers=program.write_headers() | {"Content-Type": "application/json"},
    )
    assert response.status_code == 413
    assert response.json()["code"] == "payload_too_large"


async def test_bad_path_and_query_parameters(client, program):
    await earn(client, program, "m", 1)
    for path in (
        "/v1/transactions/0",
        "/v1/transactions/abc",
        f"/v1/transactions/{2**63}",
        "/v1/members/m/transactions?limit=0",
        "/v1/members/m/transactions?limit=201",
        "/v1/members/bad%20id",
    ):
        response = await client.get(path, headers=program.headers)
        assert response.status_code == 422, path
    garbage = await client.get("/v1/members/m/transactions?cursor=zzz", headers=program.headers)
    assert garbage.status_code == 400
    assert garbage.json()["code"] == "invalid_cursor"


async def test_sums_beyond_the_ledgers_range_are_refused(client, program):
    for _ in range(1100):  # 1025 x (2^53 - 1) passes 2^63 - 1
        response = await earn(client, program, "whale", MAX)
        if response.status_code != 201:
            break
    assert response.status_code == 422
    assert response.json()["code"] == "amount_out_of_range"


async def test_unknown_endpoint_and_method_are_problems(client, program):
    missing = await client.get("/v1/nothing-here", headers=program.headers)
    assert (missing.status_code, missing.json()["code"]) == (404, "not_found")
    wrong = await client.delete("/v1/earn", headers=program.headers)
    assert (wrong.status_code, wrong.json()["code"]) == (405, "method_not_allowed")
