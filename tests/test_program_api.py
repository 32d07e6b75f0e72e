"""The program settings API: `GET /v1/program` shows them, `PUT` replaces them whole.

Bad input is a problem+json 4xx and changes nothing; the currency never changes; a new time
zone or multiplier mode is a new version of the earning rules (the old one keeps its own);
the next request of this process sees the change.
"""

from __future__ import annotations

import asyncio
import copy
from typing import Any

import httpx
import pytest

from tests.support import TestProgram, new_key

TIERS = {
    "metric": "qualifying_points",
    "period": "calendar_year",
    "grace_days": 30,
    "tiers": [
        {"code": "member", "threshold": 0},
        {"code": "gold", "name": "Gold", "threshold": 1000, "earn_multiplier": "1.5"},
    ],
}
REFERRALS = {"referrer_points": 500, "referee_points": 250, "min_order_amount": 2000}


async def show(client: httpx.AsyncClient, program: TestProgram) -> httpx.Response:
    response = await client.get("/v1/program", headers=program.headers)
    assert response.status_code == 200, response.text
    return response


async def settings(client: httpx.AsyncClient, program: TestProgram) -> dict[str, Any]:
    body: dict[str, Any] = (await show(client, program)).json()
    return body


async def put(
    client: httpx.AsyncClient,
    program: TestProgram,
    body: Any,
    *,
    key: str | None = None,
    if_match: str | None = None,
) -> httpx.Response:
    headers = program.write_headers(key)
    if if_match is not None:
        headers["If-Match"] = if_match
    return await client.put("/v1/program", json=body, headers=headers)


def assert_problem(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == code, response.text


async def rule_versions(sql: Any, program: TestProgram) -> list[int]:
    rows = await sql.fetch(
        "SELECT version FROM rule_sets WHERE program_id = $1 ORDER BY version", program.id
    )
    return [row["version"] for row in rows]


async def test_get_shows_every_setting_with_an_etag(client, program):
    response = await show(client, program)
    assert response.headers["etag"].startswith('"')
    assert response.json() == {
        "id": program.id,
        "slug": program.slug,
        "currency": "EUR",
        "name": "Test program",
        "timezone": "UTC",
        "multiplier_mode": "stack",
        "point_value": "1.000000",
        "pending_days": 0,
        "hold_ttl_seconds": 900,
        "return_policy": "cap_at_zero",
        "member_transfers": False,
        "max_backdate_days": 30,
        "expiry_policy": {"kind": "never"},
        "tiers": None,
        "referrals": None,
        "rules_version": 1,
    }


async def test_put_replaces_the_settings_and_get_round_trips(client, program, sql):
    body = await settings(client, program)
    body.update(
        name="Coffee Club",
        point_value="0.5",
        pending_days=14,
        hold_ttl_seconds=600,
        return_policy="allow_negative",
        member_transfers=True,
        max_backdate_days=7,
        expiry_policy={"kind": "lifetime", "months": 12, "round_to": "month_end"},
        tiers=TIERS,
        referrals=REFERRALS,
    )
    response = await put(client, program, body)
    assert response.status_code == 200, response.text
    shown = await show(client, program)
    assert response.json() == shown.json()
    assert response.headers["etag"] == shown.headers["etag"]
    new = shown.json()
    assert new["name"] == "Coffee Club"
    assert new["point_value"] == "0.500000"
    assert new["expiry_policy"] == {"kind": "lifetime", "months": 12, "round_to": "month_end"}
    assert new["tiers"]["tiers"][1] == {
        "code": "gold",
        "name": "Gold",
        "threshold": 1000,
        "earn_multiplier": "1.5",
    }
    assert new["referrals"]["referrer_points"] == 500
    assert new["rules_version"] == 1  # neither time zone nor multiplier mode changed
    assert await rule_versions(sql, program) == [1]
    row = await sql.fetchrow(
        "SELECT pending_days, return_policy, tier_program, referral_policy FROM programs"
        " WHERE id = $1",
        program.id,
    )
    assert (row["pending_days"], row["return_policy"]) == (14, "allow_negative")

    # a full replace: null turns tiers and referrals off again
    again = {**new, "tiers": None, "referrals": None}
    assert (await put(client, program, again)).status_code == 200
    final = await settings(client, program)
    assert (final["tiers"], final["referrals"]) == (None, None)
    row = await sql.fetchrow(
        "SELECT tier_program, referral_policy FROM programs WHERE id = $1", program.id
    )
    assert (row["tier_program"], row["referral_policy"]) == (None, None)


async def test_read_only_fields_can_be_left_out(client, program):
    body = await settings(client, program)
    for name in ("id", "slug", "currency", "rules_version"):
        del body[name]
    body["name"] = "Renamed"
    response = await put(client, program, body)
    assert response.status_code == 200, response.text
    assert response.json()["currency"] == "EUR"
    assert response.json()["name"] == "Renamed"


async def test_a_new_time_zone_or_multiplier_mode_is_a_new_rules_version(client, program, sql):
    assert (
        await client.post(
            "/v1/rules",
            json={"id": "coffee", "kind": "item_multiplier", "skus": ["c"], "multiplier": "2"},
            headers=program.write_headers(),
        )
    ).status_code == 201
    body = await settings(client, program)
    assert body["rules_version"] == 2
    body["timezone"] = "Europe/Paris"
    response = await put(client, program, body)
    assert response.status_code == 200, response.text
    assert response.json()["rules_version"] == 3
    assert response.json()["timezone"] == "Europe/Paris"

    body = response.json()
    body["multiplier_mode"] = "best"
    response = await put(client, program, body)
    assert response.status_code == 200, response.text
    assert response.json()["rules_version"] == 4
    assert response.json()["multiplier_mode"] == "best"

    rules = (await client.get("/v1/rules", headers=program.headers)).json()
    assert (rules["version"], rules["timezone"], rules["multiplier_mode"]) == (
        4,
        "Europe/Paris",
        "best",
    )
    assert [rule["id"] for rule in rules["rules"]] == ["base", "coffee"]  # same rules
    v2 = (await client.get("/v1/rules/versions/2", headers=program.headers)).json()
    assert (v2["timezone"], v2["multiplier_mode"]) == ("UTC", "stack")
    v3 = (await client.get("/v1/rules/versions/3", headers=program.headers)).json()
    assert (v3["timezone"], v3["multiplier_mode"]) == ("Europe/Paris", "stack")
    assert await rule_versions(sql, program) == [1, 2, 3, 4]
    assert await sql.fetchval("SELECT timezone FROM programs WHERE id = $1", program.id) == (
        "Europe/Paris"
    )
    assert (
        await sql.fetchval("SELECT multiplier_mode FROM programs WHERE id = $1", program.id)
        == "best"
    )


async def test_the_next_earn_sees_the_new_settings(client, program):
    body = await settings(client, program)
    body["timezone"] = "America/New_York"
    body["pending_days"] = 10
    assert (await put(client, program, body)).status_code == 200
    order = {"id": f"o-{new_key()}", "amount": 1000, "currency": "EUR"}
    earned = await client.post(
        "/v1/earn", json={"member": "zoe", "order": order}, headers=program.write_headers()
    )
    assert earned.status_code == 201, earned.text
    assert earned.json()["rules_version"] == 2
    member = (await client.get("/v1/members/zoe", headers=program.headers)).json()
    assert member["balance"]["available"] == 0  # pending for 10 days now
    assert member["balance"]["pending"] == 10


async def test_the_currency_and_ids_cannot_change(client, program, sql):
    body = await settings(client, program)
    before = await show(client, program)
    cases = [
        ({**body, "currency": "USD", "name": "X"}, 422, "currency_immutable"),
        ({**body, "currency": "eur"}, 422, "currency_immutable"),
        ({**body, "id": body["id"] + 1}, 422, "read_only_field"),
        ({**body, "slug": "another"}, 422, "read_only_field"),
        ({**body, "rules_version": 5}, 412, "version_mismatch"),
    ]
    for case, status, code in cases:
        assert_problem(await put(client, program, case), status, code)
    after = await show(client, program)
    assert after.json() == before.json()
    assert after.headers["etag"] == before.headers["etag"]


def _bad_bodies(good: dict[str, Any]) -> list[Any]:
    def with_(**changes: Any) -> dict[str, Any]:
        body = copy.deepcopy(good)
        body.update(changes)
        return body

    def without(name: str) -> dict[str, Any]:
        body = copy.deepcopy(good)
        del body[name]
        return body

    tiers_unsorted = copy.deepcopy(TIERS)
    tiers_unsorted["tiers"][1]["threshold"] = 0
    return [
        {},
        [],
        "settings",
        without("name"),
        without("tiers"),  # a full replace: null must be said, not implied
        without("referrals"),
        without("expiry_policy"),
        with_(unknown=1),
        with_(name=""),
        with_(name="   "),
        with_(name="x" * 201),
        with_(name="a\u0000b"),
        with_(name=7),
        with_(timezone="Mars/Olympus"),
        with_(timezone=""),
        with_(timezone=" UTC"),
        with_(timezone=3),
        with_(multiplier_mode="sum"),
        with_(point_value="-1"),
        with_(point_value="NaN"),
        with_(point_value="0.0000001"),
        with_(point_value="1234567890123"),
        with_(point_value=True),
        with_(pending_days=366),
        with_(pending_days=-1),
        with_(pending_days="3"),
        with_(pending_days=3.0),
        with_(hold_ttl_seconds=5),
        with_(hold_ttl_seconds=10**20),
        with_(return_policy="refund_all"),
        with_(member_transfers="yes"),
        with_(member_transfers=1),
        with_(max_backdate_days=3651),
        with_(expiry_policy={"kind": "sometimes"}),
        with_(expiry_policy={"kind": "lifetime"}),
        with_(expiry_policy={"kind": "lifetime", "months": 0}),
        with_(expiry_policy={"kind": "fixed_date", "month": 2, "day": 29}),
        with_(expiry_policy={"kind": "never", "months": 3}),
        with_(expiry_policy=None),
        with_(tiers={"metric": "qualifying_points", "period": "calendar_year", "tiers": []}),
        with_(tiers={**TIERS, "period": "rolling"}),  # rolling needs rolling_months
        with_(tiers=tiers_unsorted),
        with_(tiers={**TIERS, "metric": "vibes"}),
        with_(referrals={**REFERRALS, "referrer_points": -5}),
        with_(referrals={**REFERRALS, "monthly_cap": 0}),
        with_(referrals={**REFERRALS, "bonus": 1}),
        with_(referrals=[]),
    ]


async def test_every_bad_body_is_422_and_changes_nothing(client, program, sql):
    before = await show(client, program)
    bodies = _bad_bodies(before.json())
    for body in bodies:
        response = await put(client, program, body)
        assert_problem(response, 422, "validation_error")
    after = await show(client, program)
    assert after.json() == before.json()
    assert after.headers["etag"] == before.headers["etag"]
    assert await rule_versions(sql, program) == [1]


async def test_malformed_json_and_missing_key(client, program):
    body = await settings(client, program)
    malformed = await client.put(
        "/v1/program",
        content=b'{"name": ',
        headers={**program.write_headers(), "Content-Type": "application/json"},
    )
    assert_problem(malformed, 400, "malformed_json")
    no_key = await client.put("/v1/program", json=body, headers=program.headers)
    assert_problem(no_key, 400, "idempotency_key_missing")


async def test_if_match_guards_the_replace(client, program):
    before = await show(client, program)
    etag = before.headers["etag"]
    body = {**before.json(), "name": "First"}
    first = await put(client, program, body, if_match=etag)
    assert first.status_code == 200, first.text
    assert first.headers["etag"] != etag
    stale = await put(client, program, {**before.json(), "name": "Second"}, if_match=etag)
    assert_problem(stale, 412, "version_mismatch")
    assert (await settings(client, program))["name"] == "First"
    fresh = await put(
        client, program, {**before.json(), "name": "Third"}, if_match=first.headers["etag"]
    )
    assert fresh.status_code == 200, fresh.text


async def test_concurrent_replaces_of_one_version_exactly_one_wins(client, program, sql):
    before = await show(client, program)
    etag = before.headers["etag"]
    bodies = [{**before.json(), "name": f"n{n}", "timezone": "Europe/Paris"} for n in range(8)]
    responses = await asyncio.gather(*(put(client, program, b, if_match=etag) for b in bodies))
    statuses = sorted(response.status_code for response in responses)
    assert statuses == [200] + [412] * 7, [r.text for r in responses]
    assert await rule_versions(sql, program) == [1, 2]


async def test_replays_return_the_first_answer(client, program):
    key = new_key()
    body = {**(await settings(client, program)), "name": "Once"}
    first = await put(client, program, body, key=key)
    assert first.status_code == 200
    replay = await put(client, program, body, key=key)
    assert replay.status_code == 200
    assert replay.headers["idempotent-replayed"] == "true"
    assert replay.json() == first.json()
    assert replay.headers["etag"] == first.headers["etag"]
    conflict = await put(client, program, {**body, "name": "Twice"}, key=key)
    assert_problem(conflict, 409, "idempotency_conflict")
    assert (await settings(client, program))["name"] == "Once"


@pytest.mark.parametrize("method", ["GET", "PUT"])
async def test_only_admin_keys(client, program, method):
    key = await program.key_with("read", "earn", "redeem")
    body = await settings(client, program)
    response = await client.request(
        method,
        "/v1/program",
        json=body if method == "PUT" else None,
        headers=program.write_headers(api_key=key),
    )
    assert_problem(response, 403, "forbidden")
    assert_problem(await client.request(method, "/v1/program"), 401, "unauthorized")


async def test_each_program_sees_and_changes_only_itself(client, program, other_program):
    mine = await settings(client, program)
    theirs = await settings(client, other_program)
    assert theirs["id"] == other_program.id
    # sending one's own settings to another program's key cannot change the ids
    assert_problem(await put(client, other_program, mine), 422, "read_only_field")
    assert (await settings(client, other_program)) == theirs
