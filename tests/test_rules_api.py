"""The earning-rules admin API: versioned, append-only, optimistic concurrency.

Every change writes version N + 1 of the whole rule set and leaves version N as it was; a
write with a stale `If-Match` is 412 and changes nothing; of concurrent writers on one version
exactly one wins; bad input is a problem+json 4xx that writes no version.
"""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any

import httpx
import pytest

from app import errors
from app.db import Database
from app.domain.earning import RuleSet
from app.programs import rule_sets
from app.programs import rule_sets as repository
from app.rules import service as rules_service
from tests.support import TestProgram, new_key, run_cli

BASE = {
    "id": "base",
    "kind": "base_rate",
    "description": None,
    "window": None,
    "channels": None,
    "stores": None,
    "points_per_unit": "1.0000",
    "rounding": "floor",
    "min_order_amount": 0,
}
COFFEE = {"id": "coffee-x2", "kind": "item_multiplier", "categories": ["coffee"], "multiplier": "2"}
WEEKEND = {
    "id": "double-weekend",
    "kind": "campaign_multiplier",
    "multiplier": "2",
    "description": "Double points weekend",
    "window": {"starts_on": "2026-06-06", "ends_on": "2026-06-07", "weekdays": ["sat", "sun"]},
}


async def versions(sql: Any, program: TestProgram) -> list[int]:
    rows = await sql.fetch(
        "SELECT version FROM rule_sets WHERE program_id = $1 ORDER BY version", program.id
    )
    return [row["version"] for row in rows]


async def add(
    client: httpx.AsyncClient,
    program: TestProgram,
    rule: dict[str, Any],
    *,
    key: str | None = None,
    if_match: str | None = None,
) -> httpx.Response:
    headers = program.write_headers(key)
    if if_match is not None:
        headers["If-Match"] = if_match
    return await client.post("/v1/rules", json=rule, headers=headers)


async def patch(
    client: httpx.AsyncClient,
    program: TestProgram,
    rule_id: str,
    body: Any,
    *,
    if_match: str | None = None,
    content_type: str = "application/merge-patch+json",
) -> httpx.Response:
    import json

    headers = {**program.write_headers(), "Content-Type": content_type}
    if if_match is not None:
        headers["If-Match"] = if_match
    return await client.patch(f"/v1/rules/{rule_id}", content=json.dumps(body), headers=headers)


def assert_problem(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == code, response.text


async def test_a_new_program_has_version_1_with_its_base_rate(client, program):
    response = await client.get("/v1/rules", headers=program.headers)
    assert response.status_code == 200, response.text
    assert response.headers["etag"] == '"1"'
    body = response.json()
    assert body["version"] == 1
    assert body["multiplier_mode"] == "stack"
    assert body["timezone"] == "UTC"
    assert body["rules"] == [BASE]
    assert body["created_at"]
    one = await client.get("/v1/rules/base", headers=program.headers)
    assert one.status_code == 200
    assert one.headers["etag"] == '"1"'
    assert one.json() == {"rules_version": 1, "rule": BASE}


async def test_adding_a_rule_writes_version_2_and_keeps_version_1(client, program, sql):
    response = await add(client, program, COFFEE)
    assert response.status_code == 201, response.text
    assert response.headers["etag"] == '"2"'
    assert response.headers["location"] == "/v1/rules/coffee-x2"
    body = response.json()
    assert body["rules_version"] == 2
    assert body["rule"]["id"] == "coffee-x2"
    assert body["rule"]["multiplier"] == "2"

    current = (await client.get("/v1/rules", headers=program.headers)).json()
    assert current["version"] == 2
    assert [rule["id"] for rule in current["rules"]] == ["base", "coffee-x2"]
    old = await client.get("/v1/rules/versions/1", headers=program.headers)
    assert old.status_code == 200
    assert old.json()["version"] == 1
    assert [rule["id"] for rule in old.json()["rules"]] == ["base"]
    assert await versions(sql, program) == [1, 2]


async def test_patch_merges_fields_and_nested_objects(client, program, sql):
    await add(client, program, WEEKEND)
    response = await patch(
        client,
        program,
        "double-weekend",
        {"multiplier": "3", "window": {"ends_on": "2026-06-14"}, "description": None},
    )
    assert response.status_code == 200, response.text
    assert response.headers["etag"] == '"3"'
    rule = response.json()["rule"]
    assert rule["multiplier"] == "3"
    assert rule["description"] is None
    assert rule["window"] == {
        "starts_on": "2026-06-06",
        "ends_on": "2026-06-14",
        "weekdays": ["sat", "sun"],
        "from_time": None,
        "until_time": None,
    }
    # version 2 still has the rule as it was added
    v2 = (await client.get("/v1/rules/versions/2", headers=program.headers)).json()
    assert v2["rules"][1]["multiplier"] == "2"
    assert v2["rules"][1]["window"]["ends_on"] == "2026-06-07"
    assert await versions(sql, program) == [1, 2, 3]


async def test_patch_accepts_plain_json_and_an_empty_patch_writes_nothing(client, program, sql):
    response = await patch(client, program, "base", {}, content_type="application/json")
    assert response.status_code == 200, response.text
    assert response.json() == {"rules_version": 1, "rule": BASE}
    assert await versions(sql, program) == [1]
    same = await patch(client, program, "base", {"rounding": "floor", "kind": "base_rate"})
    assert same.status_code == 200, same.text
    assert await versions(sql, program) == [1]


async def test_delete_writes_a_version_without_the_rule(client, program, sql):
    await add(client, program, COFFEE)
    response = await client.delete("/v1/rules/coffee-x2", headers=program.write_headers())
    assert response.status_code == 200, response.text
    assert response.headers["etag"] == '"3"'
    assert response.json()["rules_version"] == 3
    assert response.json()["rule"]["id"] == "coffee-x2"
    assert_problem(
        await client.get("/v1/rules/coffee-x2", headers=program.headers), 404, "rule_not_found"
    )
    again = await client.delete("/v1/rules/coffee-x2", headers=program.write_headers())
    assert_problem(again, 404, "rule_not_found")
    v2 = (await client.get("/v1/rules/versions/2", headers=program.headers)).json()
    assert [rule["id"] for rule in v2["rules"]] == ["base", "coffee-x2"]
    assert await versions(sql, program) == [1, 2, 3]


async def test_a_duplicate_rule_id_is_409_rule_exists(client, program, sql):
    assert (await add(client, program, COFFEE)).status_code == 201
    other = {**COFFEE, "multiplier": "5"}
    assert_problem(await add(client, program, other), 409, "rule_exists")
    assert_problem(await add(client, program, {**BASE, "points_per_unit": "3"}), 409, "rule_exists")
    assert await versions(sql, program) == [1, 2]


BAD_RULES: list[Any] = [
    {},
    [],
    "base",
    {"id": "x", "kind": "no_such_kind"},
    {"id": "x", "kind": "base_rate"},  # points_per_unit missing
    {"id": "x", "kind": "base_rate", "points_per_unit": "1", "extra": 1},
    {"id": "x", "kind": "base_rate", "points_per_unit": "-1"},
    {"id": "x", "kind": "base_rate", "points_per_unit": "NaN"},
    {"id": "x", "kind": "base_rate", "points_per_unit": "1e400"},
    {"id": "x", "kind": "base_rate", "points_per_unit": "0.0000001"},
    {"id": "x", "kind": "base_rate", "points_per_unit": "1", "rounding": "up"},
    {"id": "x", "kind": "base_rate", "points_per_unit": "1", "min_order_amount": "100"},
    {"id": "x", "kind": "base_rate", "points_per_unit": "1", "min_order_amount": 10**20},
    {"id": "x", "kind": "base_rate", "points_per_unit": "1", "channels": []},
    {"id": "x", "kind": "base_rate", "points_per_unit": "1", "channels": ["web", "web"]},
    {"id": "x", "kind": "base_rate", "points_per_unit": "1", "channels": ["fax"]},
    {"id": "x", "kind": "base_rate", "points_per_unit": "1", "description": "a\u0000b"},
    {"id": "", "kind": "base_rate", "points_per_unit": "1"},
    {"id": "has space", "kind": "base_rate", "points_per_unit": "1"},
    {"id": "x" * 65, "kind": "base_rate", "points_per_unit": "1"},
    {"id": 7, "kind": "base_rate", "points_per_unit": "1"},
    {"id": "x", "kind": "item_multiplier", "multiplier": "2"},  # no category or SKU
    {"id": "x", "kind": "item_multiplier", "skus": ["a"], "multiplier": "0"},
    {"id": "x", "kind": "item_multiplier", "skus": ["a"], "multiplier": "1001"},
    {"id": "x", "kind": "campaign_bonus", "points": 10},  # a campaign needs a window
    {"id": "x", "kind": "campaign_bonus", "points": 10, "window": {"starts_on": "2026-01-01"}},
    {
        "id": "x",
        "kind": "campaign_bonus",
        "points": 10,
        "window": {"starts_on": "2026-02-01", "ends_on": "2026-01-01"},
    },
    {
        "id": "x",
        "kind": "campaign_bonus",
        "points": 10,
        "window": {"starts_on": 1767225600, "ends_on": "2026-01-31"},
    },
    {"id": "x", "kind": "base_rate", "points_per_unit": "1", "window": {"from_time": 3600}},
    {"id": "x", "kind": "base_rate", "points_per_unit": "1", "window": {"weekdays": ["fun"]}},
    {"id": "x", "kind": "frequency_challenge", "purchases": 0, "points": 200},
    {"id": "x", "kind": "frequency_challenge", "purchases": 3.0, "points": 200},
    {"id": "x", "kind": "birthday_bonus", "points": 100, "on": "week"},
    {"id": "x", "kind": "order_cap", "max_points": -1},
    {"id": "x", "kind": "daily_cap", "max_points": True},
]


@pytest.mark.parametrize("rule", BAD_RULES, ids=range(len(BAD_RULES)))
async def test_an_invalid_rule_is_422_and_writes_nothing(client, program, sql, rule):
    response = await add(client, program, rule)
    assert_problem(response, 422, "validation_error")
    assert await versions(sql, program) == [1]


async def test_malformed_and_oversized_bodies_write_nothing(client, program, sql):
    malformed = await client.post(
        "/v1/rules",
        content=b'{"id": "x",',
        headers={**program.write_headers(), "Content-Type": "application/json"},
    )
    assert_problem(malformed, 400, "malformed_json")
    huge = await client.post(
        "/v1/rules",
        content=b'{"id": "x", "description": "' + b"a" * 3_000_000 + b'"}',
        headers={**program.write_headers(), "Content-Type": "application/json"},
    )
    assert_problem(huge, 413, "payload_too_large")
    assert await versions(sql, program) == [1]


BAD_PATCHES: list[tuple[Any, int, str]] = [
    ({"kind": "exclusion"}, 422, "rule_kind_immutable"),
    ({"kind": None}, 422, "rule_kind_immutable"),
    ({"id": "renamed"}, 422, "rule_kind_immutable"),
    ({"points_per_unit": None}, 422, "validation_error"),  # required field removed
    ({"points_per_unit": "abc"}, 422, "validation_error"),
    ({"points_per_unit": 10**30}, 422, "validation_error"),
    ({"min_order_amount": 2**70}, 422, "validation_error"),
    ({"multiplier": "2"}, 422, "validation_error"),  # not a field of a base rate
    ({"window": {"from_time": "25:00"}}, 422, "validation_error"),
    ({"window": "weekends"}, 422, "validation_error"),
    ([], 422, "validation_error"),
    ("x", 422, "validation_error"),
    (None, 422, "validation_error"),
]


@pytest.mark.parametrize(("body", "status", "code"), BAD_PATCHES, ids=range(len(BAD_PATCHES)))
async def test_an_invalid_patch_is_4xx_and_writes_nothing(client, program, sql, body, status, code):
    response = await patch(client, program, "base", body)
    assert_problem(response, status, code)
    assert await versions(sql, program) == [1]
    rule = (await client.get("/v1/rules/base", headers=program.headers)).json()["rule"]
    assert rule == BASE


async def test_unknown_rules_and_versions_are_404(client, program):
    assert_problem(
        await client.get("/v1/rules/nope", headers=program.headers), 404, "rule_not_found"
    )
    assert_problem(await patch(client, program, "nope", {"points": 1}), 404, "rule_not_found")
    assert_problem(
        await client.get("/v1/rules/versions/2", headers=program.headers),
        404,
        "rules_version_not_found",
    )
    for bad in ("0", "-1", "abc", "99999999999"):
        response = await client.get(f"/v1/rules/versions/{bad}", headers=program.headers)
        assert_problem(response, 422, "validation_error")
    bad_id = await client.get("/v1/rules/has%20space", headers=program.headers)
    assert_problem(bad_id, 422, "validation_error")


async def test_if_match_guards_every_write(client, program, sql):
    stale = await add(client, program, COFFEE, if_match='"7"')
    assert_problem(stale, 412, "version_mismatch")
    weak = await add(client, program, COFFEE, if_match='W/"1"')
    assert_problem(weak, 412, "version_mismatch")
    assert await versions(sql, program) == [1]

    ok = await add(client, program, COFFEE, if_match='"1"')
    assert ok.status_code == 201, ok.text
    assert_problem(
        await patch(client, program, "coffee-x2", {"multiplier": "4"}, if_match='"1"'),
        412,
        "version_mismatch",
    )
    headers = {**program.write_headers(), "If-Match": '"1"'}
    assert_problem(
        await client.delete("/v1/rules/coffee-x2", headers=headers), 412, "version_mismatch"
    )
    assert await versions(sql, program) == [1, 2]

    patched = await patch(client, program, "coffee-x2", {"multiplier": "4"}, if_match='"3", "2"')
    assert patched.status_code == 200, patched.text
    headers = {**program.write_headers(), "If-Match": "*"}
    assert (await client.delete("/v1/rules/coffee-x2", headers=headers)).status_code == 200
    too_long = await add(client, program, COFFEE, if_match='"' + "9" * 2000 + '"')
    assert_problem(too_long, 422, "validation_error")
    assert await versions(sql, program) == [1, 2, 3, 4]


async def test_writes_replay_by_idempotency_key(client, program, sql):
    key = new_key()
    first = await add(client, program, COFFEE, key=key)
    assert first.status_code == 201
    replay = await add(client, program, COFFEE, key=key)
    assert replay.status_code == 201
    assert replay.headers["idempotent-replayed"] == "true"
    assert replay.headers["etag"] == '"2"'
    assert replay.json() == first.json()
    assert await versions(sql, program) == [1, 2]

    other_body = await add(client, program, {**COFFEE, "multiplier": "3"}, key=key)
    assert_problem(other_body, 409, "idempotency_conflict")
    headers = program.write_headers(key)
    other_endpoint = await client.delete("/v1/rules/coffee-x2", headers=headers)
    assert_problem(other_endpoint, 409, "idempotency_conflict")

    no_key = await client.post("/v1/rules", json=WEEKEND, headers=program.headers)
    assert_problem(no_key, 400, "idempotency_key_missing")
    # a failed write stores nothing: its key can be used again
    failed_key = new_key()
    assert_problem(await add(client, program, COFFEE, key=failed_key), 409, "rule_exists")
    assert (await add(client, program, WEEKEND, key=failed_key)).status_code == 201
    assert await versions(sql, program) == [1, 2, 3]


async def test_concurrent_writers_on_one_version_exactly_one_wins(client, program, sql):
    responses = await asyncio.gather(
        *(add(client, program, {**COFFEE, "id": f"rule-{n}"}, if_match='"1"') for n in range(10))
    )
    statuses = sorted(response.status_code for response in responses)
    assert statuses == [201] + [412] * 9, [r.text for r in responses]
    for response in responses:
        if response.status_code == 412:
            assert response.json()["code"] == "version_mismatch"
    assert await versions(sql, program) == [1, 2]
    current = (await client.get("/v1/rules", headers=program.headers)).json()
    assert len(current["rules"]) == 2


async def test_concurrent_writers_without_if_match_all_apply_in_turn(client, program, sql):
    responses = await asyncio.gather(
        *(add(client, program, {**COFFEE, "id": f"rule-{n}"}) for n in range(10))
    )
    assert all(response.status_code == 201 for response in responses), [r.text for r in responses]
    assert sorted(response.json()["rules_version"] for response in responses) == list(range(2, 12))
    assert await versions(sql, program) == list(range(1, 12))
    current = (await client.get("/v1/rules", headers=program.headers)).json()
    assert {rule["id"] for rule in current["rules"]} == {"base"} | {f"rule-{n}" for n in range(10)}


async def test_a_version_written_by_someone_else_is_a_conflict_not_a_500(
    database: Database, program
):
    async with database.single() as db:
        stored = await repository.current(db, program.id)
    taken = RuleSet(version=1, timezone="UTC", rules=stored.rules.rules)
    with pytest.raises(errors.VersionConflict):
        async with database.transaction() as tx:
            await repository.insert(tx, program.id, taken)


async def test_the_next_earn_uses_the_new_version(client, program):
    async def earn() -> httpx.Response:
        order = {"id": f"o-{new_key()}", "amount": 1000, "currency": "EUR"}
        return await client.post(
            "/v1/earn", json={"member": "ann", "order": order}, headers=program.write_headers()
        )

    before = await earn()
    assert before.status_code == 201, before.text
    assert (before.json()["points"], before.json()["rules_version"]) == (10, 1)
    changed = await patch(client, program, "base", {"points_per_unit": "3"})
    assert changed.status_code == 200, changed.text
    after = await earn()
    assert after.status_code == 201, after.text
    assert (after.json()["points"], after.json()["rules_version"]) == (30, 2)


async def test_admin_scope_and_tenant_isolation(client, program, other_program, sql):
    assert (await add(client, program, COFFEE)).status_code == 201
    read_key = await program.key_with("read", "earn", "redeem")
    read_only = {"Authorization": f"Bearer {read_key}"}
    assert_problem(await client.get("/v1/rules", headers=read_only), 403, "forbidden")
    assert_problem(
        await client.post(
            "/v1/rules", json=WEEKEND, headers=program.write_headers(api_key=read_key)
        ),
        403,
        "forbidden",
    )
    assert_problem(await client.get("/v1/rules"), 401, "unauthorized")
    # another program sees its own rules only
    assert_problem(
        await client.get("/v1/rules/coffee-x2", headers=other_program.headers),
        404,
        "rule_not_found",
    )
    assert_problem(
        await client.delete("/v1/rules/coffee-x2", headers=other_program.write_headers()),
        404,
        "rule_not_found",
    )
    assert_problem(
        await client.get("/v1/rules/versions/2", headers=other_program.headers),
        404,
        "rules_version_not_found",
    )
    assert await versions(sql, program) == [1, 2]
    assert await versions(sql, other_program) == [1]


async def test_set_base_rate_replaces_the_base_rule_or_adds_one(
    client, database: Database, program, sql
):
    await patch(client, program, "base", {"rounding": "nearest", "min_order_amount": 500})
    async with database.transaction() as tx:
        await rule_sets.set_base_rate(tx, program_id=program.id, rate=Decimal("2.5"))
    base = (await client.get("/v1/rules/base", headers=program.headers)).json()
    assert base["rules_version"] == 3
    assert base["rule"]["points_per_unit"] == "2.5"
    assert base["rule"]["rounding"] == "nearest"  # the rest of the rule is kept
    assert base["rule"]["min_order_amount"] == 500

    await client.delete("/v1/rules/base", headers=program.write_headers())
    await add(client, program, COFFEE)
    async with database.transaction() as tx:
        await rule_sets.set_base_rate(tx, program_id=program.id, rate=Decimal(4))
    current = (await client.get("/v1/rules", headers=program.headers)).json()
    assert current["version"] == 6
    assert [rule["id"] for rule in current["rules"]] == ["coffee-x2", "base"]
    assert current["rules"][1]["points_per_unit"] == "4"

    with pytest.raises(ValueError, match="invalid base rate"):
        async with database.transaction() as tx:
            await rule_sets.set_base_rate(tx, program_id=program.id, rate=Decimal("2000000"))
    assert await versions(sql, program) == [1, 2, 3, 4, 5, 6]


async def test_cli_program_set_base_rate_writes_a_new_version(client, database_url, program):
    result = await run_cli(
        database_url, "program", "set", "--slug", program.slug, "--base-rate", "2"
    )
    assert result.returncode == 0, result.stdout + result.stderr
    await asyncio.sleep(0.6)  # the test app caches programs for 0.5 s
    current = (await client.get("/v1/rules", headers=program.headers)).json()
    assert current["version"] == 2
    assert current["rules"][0]["points_per_unit"] == "2"
    order = {"id": f"o-{new_key()}", "amount": 1000, "currency": "EUR"}
    earned = await client.post(
        "/v1/earn", json={"member": "cli", "order": order}, headers=program.write_headers()
    )
    assert earned.status_code == 201, earned.text
    assert (earned.json()["points"], earned.json()["rules_version"]) == (20, 2)


# --- the pure parts -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("target", "patch", "result"),
    [  # the examples of RFC 7396, appendix A
        ({"a": "b"}, {"a": "c"}, {"a": "c"}),
        ({"a": "b"}, {"b": "c"}, {"a": "b", "b": "c"}),
        ({"a": "b"}, {"a": None}, {}),
        ({"a": "b", "b": "c"}, {"a": None}, {"b": "c"}),
        ({"a": ["b"]}, {"a": "c"}, {"a": "c"}),
        ({"a": "c"}, {"a": ["b"]}, {"a": ["b"]}),
        ({"a": {"b": "c"}}, {"a": {"b": "d", "c": None}}, {"a": {"b": "d"}}),
        ({"a": [{"b": "c"}]}, {"a": [1]}, {"a": [1]}),
        (["a", "b"], ["c", "d"], ["c", "d"]),
        ({"a": "b"}, ["c"], ["c"]),
        ({"e": None}, {"a": 1}, {"e": None, "a": 1}),
        ([1, 2], {"a": "b", "c": None}, {"a": "b"}),
        ({}, {"a": {"bb": {"ccc": None}}}, {"a": {"bb": {}}}),
    ],
)
def test_merge_patch_follows_rfc_7396(target, patch, result):
    assert rules_service.merge_patch(target, patch) == result


@pytest.mark.parametrize(
    ("header", "holds"),
    [
        (None, True),
        ("*", True),
        ('"3"', True),
        ("3", True),
        ('"1", "3"', True),
        (' "3" ', True),
        ('"4"', False),
        ('W/"3"', False),
        ('"33"', False),
        ("", False),
        ("garbage", False),
    ],
)
def test_if_match(header, holds):
    assert rule_sets.if_match_holds(header, rule_sets.etag(3)) is holds
