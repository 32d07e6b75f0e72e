"""Earning rules through the API: every earn is computed by the program's current rule set,
records its version and breakdown, and once-only rules give once even under concurrency.

The arithmetic of each rule is unit-tested in tests/unit; these tests check the wiring: the
order and member state the service hands the rules, and what it records afterwards.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx

from tests.support import TestProgram, new_key

EUR = "EUR"


async def set_rules(
    app: Any, sql: Any, program: TestProgram, rules: list[dict[str, Any]], **settings: Any
) -> int:
    """Write the next rule-set version straight into the table (the admin API has its own
    tests) and drop the cached program so the next request sees it."""
    version = await sql.fetchval(
        "SELECT max(version) + 1 FROM rule_sets WHERE program_id = $1", program.id
    )
    definition = {
        "version": version,
        "multiplier_mode": settings.pop("multiplier_mode", "stack"),
        "timezone": settings.pop("timezone", "Europe/Paris"),
        "rules": rules,
    }
    await sql.execute(
        "INSERT INTO rule_sets (program_id, version, definition) VALUES ($1, $2, $3::jsonb)",
        program.id,
        version,
        json.dumps(definition),
    )
    for column, value in settings.items():
        await sql.execute(f"UPDATE programs SET {column} = $2 WHERE id = $1", program.id, value)
    app.state.auth_caches.programs.clear()
    return int(version)


BASE = {"id": "base", "kind": "base_rate", "points_per_unit": "1"}


async def earn_order(
    client: httpx.AsyncClient,
    program: TestProgram,
    member: str,
    amount: int,
    *,
    key: str | None = None,
    **extra: Any,
) -> httpx.Response:
    order: dict[str, Any] = {"id": f"o-{new_key()}", "amount": amount, "currency": EUR}
    if "items" in extra:
        order["items"] = extra.pop("items")
    return await client.post(
        "/v1/earn",
        json={"member": member, "order": order, **extra},
        headers=program.write_headers(key),
    )


def lines(response: httpx.Response) -> dict[str, int]:
    return {
        line["rule_id"] or line["kind"]: line["points"] for line in response.json()["breakdown"]
    }


async def test_a_new_program_earns_at_its_base_rate_as_rule_version_1(client, program, sql):
    response = await earn_order(client, program, "ann", 1299)
    assert response.status_code == 201, response.text
    body = response.json()
    # 1 point per euro, rounded down: EUR 12.99 earns 12
    assert body["points"] == 12
    assert body["rules_version"] == 1
    assert body["breakdown"] == [{"rule_id": "base", "kind": "base_rate", "points": 12}]
    metadata = json.loads(
        await sql.fetchval(
            "SELECT metadata FROM transactions WHERE id = $1", body["transaction_id"]
        )
    )
    assert metadata["rules_version"] == 1
    assert metadata["breakdown"] == body["breakdown"]


async def test_items_multipliers_and_exclusions(app, client, program, sql):
    await set_rules(
        app,
        sql,
        program,
        [
            {"id": "no-gift-cards", "kind": "exclusion", "categories": ["gift-card"]},
            BASE,
            {
                "id": "coffee-x2",
                "kind": "item_multiplier",
                "categories": ["coffee"],
                "multiplier": "2",
            },
        ],
    )
    items = [
        {"sku": "espresso", "category": "coffee", "quantity": 2, "unit_price": 450},
        {"sku": "book-1", "category": "books", "quantity": 1, "unit_price": 2000},
        {"sku": "gc-50", "category": "gift-card", "quantity": 1, "unit_price": 5000},
    ]
    response = await earn_order(client, program, "bea", 7900, items=items)
    assert response.status_code == 201, response.text
    # the gift card leaves the base (EUR 29.00 -> 29 points); coffee EUR 9 earns 9 more
    assert lines(response) == {"base": 29, "coffee-x2": 9}
    assert response.json()["points"] == 38
    assert response.json()["rules_version"] == 2


async def test_campaign_window_channel_and_store_filters(app, client, program, sql):
    await set_rules(
        app,
        sql,
        program,
        [
            BASE,
            {
                "id": "weekend-x2",
                "kind": "campaign_multiplier",
                "multiplier": "2",
                "window": {
                    "starts_on": "2026-01-01",
                    "ends_on": "2026-12-31",
                    "weekdays": ["sat", "sun"],
                },
            },
            {
                "id": "app-bonus",
                "kind": "campaign_bonus",
                "points": 50,
                "channels": ["app"],
                "window": {"starts_on": "2020-01-01", "ends_on": "2099-12-31"},
            },
            {
                "id": "store-7",
                "kind": "campaign_bonus",
                "points": 7,
                "stores": ["S7"],
                "window": {"starts_on": "2020-01-01", "ends_on": "2099-12-31"},
            },
        ],
        max_backdate_days=3650,
    )
    saturday = "2026-11-21T12:00:00+01:00"
    friday = "2026-11-20T12:00:00+01:00"
    on_saturday = await earn_order(client, program, "cy", 1000, occurred_at=saturday)
    on_friday = await earn_order(client, program, "cy", 1000, occurred_at=friday)
    in_app = await earn_order(client, program, "cy", 1000, occurred_at=friday, channel="app")
    in_store = await earn_order(client, program, "cy", 1000, occurred_at=friday, store_id="S7")
    assert lines(on_saturday) == {"base": 10, "weekend-x2": 10}
    assert lines(on_friday) == {"base": 10}
    assert lines(in_app) == {"base": 10, "app-bonus": 50}
    assert lines(in_store) == {"base": 10, "store-7": 7}


async def test_first_purchase_bonus_is_given_once(app, client, program, sql):
    await set_rules(
        app,
        sql,
        program,
        [BASE, {"id": "welcome", "kind": "first_purchase_bonus", "points": 100}],
    )
    first = await earn_order(client, program, "dan", 500)
    second = await earn_order(client, program, "dan", 500)
    assert lines(first) == {"base": 5, "welcome": 100}
    assert lines(second) == {"base": 5}
    awards = await sql.fetch(
        "SELECT rule_id, period FROM rule_awards r JOIN members m ON m.id = r.member_id"
        " WHERE m.program_id = $1",
        program.id,
    )
    assert [(a["rule_id"], a["period"]) for a in awards] == [("welcome", "once")]


async def test_first_purchase_bonus_once_under_concurrent_first_orders(app, client, program, sql):
    await set_rules(
        app,
        sql,
        program,
        [BASE, {"id": "welcome", "kind": "first_purchase_bonus", "points": 100}],
    )
    responses = await asyncio.gather(*(earn_order(client, program, "eve", 500) for _ in range(12)))
    assert all(r.status_code == 201 for r in responses), [r.text for r in responses]
    bonuses = [r for r in responses if "welcome" in lines(r)]
    assert len(bonuses) == 1
    balance = (await client.get("/v1/members/eve", headers=program.headers)).json()["balance"]
    assert balance["available"] == 12 * 5 + 100


async def test_birthday_bonus_once_per_year_in_the_birthday_month(app, client, program, sql):
    await set_rules(
        app,
        sql,
        program,
        [BASE, {"id": "bday", "kind": "birthday_bonus", "points": 250, "on": "month"}],
        max_backdate_days=3650,
    )
    enrolled = await client.post(
        "/v1/members",
        json={"external_id": "fay", "birthday": "1990-03-14"},
        headers=program.write_headers(),
    )
    assert enrolled.status_code == 201, enrolled.text
    march_2025 = await earn_order(client, program, "fay", 1000, occurred_at="2025-03-02T10:00:00Z")
    again = await earn_order(client, program, "fay", 1000, occurred_at="2025-03-20T10:00:00Z")
    april = await earn_order(client, program, "fay", 1000, occurred_at="2025-04-02T10:00:00Z")
    march_2026 = await earn_order(client, program, "fay", 1000, occurred_at="2026-03-05T10:00:00Z")
    assert lines(march_2025) == {"base": 10, "bday": 250}
    assert lines(again) == {"base": 10}
    assert lines(april) == {"base": 10}
    assert lines(march_2026) == {"base": 10, "bday": 250}


async def test_frequency_challenge_pays_on_the_third_purchase_of_the_month(
    app, client, program, sql
):
    await set_rules(
        app,
        sql,
        program,
        [
            BASE,
            {
                "id": "three",
                "kind": "frequency_challenge",
                "purchases": 3,
                "points": 200,
                "min_order_amount": 1000,
            },
        ],
        max_backdate_days=3650,
    )
    dates = ["2026-10-01", "2026-10-09", "2026-10-09", "2026-10-20", "2026-10-25", "2026-11-02"]
    amounts = [1500, 500, 1500, 1500, 1500, 1500]  # the 500 is below the minimum: not counted
    awarded = []
    for day, amount in zip(dates, amounts, strict=True):
        response = await earn_order(client, program, "gus", amount, occurred_at=f"{day}T12:00:00Z")
        assert response.status_code == 201, response.text
        awarded.append(lines(response).get("three", 0))
    assert awarded == [0, 0, 0, 200, 0, 0]


async def test_order_cap_and_daily_cap(app, client, program, sql):
    await set_rules(
        app,
        sql,
        program,
        [
            BASE,
            {"id": "cap-order", "kind": "order_cap", "max_points": 80},
            {"id": "cap-day", "kind": "daily_cap", "max_points": 150},
        ],
    )
    first = await earn_order(client, program, "hal", 10000)  # 100 -> capped at 80
    second = await earn_order(client, program, "hal", 6000)  # 60, day total 140
    third = await earn_order(client, program, "hal", 5000)  # 50, only 10 left today
    fourth = await earn_order(client, program, "hal", 5000)  # nothing left today
    assert lines(first) == {"base": 100, "cap-order": -20}
    assert lines(second) == {"base": 60}
    assert lines(third) == {"base": 50, "cap-day": -40}
    assert fourth.status_code == 422
    assert fourth.json()["code"] == "nothing_to_earn"


async def test_points_given_without_an_order_do_not_use_up_the_daily_cap(app, client, program, sql):
    """The cap is on what the day's orders earn: 500 goodwill points given the same day (an
    earn without an order) leave the member's 150 for orders untouched."""
    await set_rules(
        app, sql, program, [BASE, {"id": "cap-day", "kind": "daily_cap", "max_points": 150}]
    )
    goodwill = await client.post(
        "/v1/earn", json={"member": "gus", "points": 500}, headers=program.write_headers()
    )
    assert goodwill.status_code == 201, goodwill.text
    first = await earn_order(client, program, "gus", 10000)  # 100 of the 150
    second = await earn_order(client, program, "gus", 10000)  # 100, only 50 left today
    assert lines(first) == {"base": 100}
    assert lines(second) == {"base": 100, "cap-day": -50}


async def test_daily_cap_holds_under_concurrent_earns(app, client, program, sql):
    await set_rules(
        app, sql, program, [BASE, {"id": "cap-day", "kind": "daily_cap", "max_points": 95}]
    )
    responses = await asyncio.gather(*(earn_order(client, program, "ivy", 1000) for _ in range(15)))
    earned = sum(r.json()["points"] for r in responses if r.status_code == 201)
    assert earned == 95
    assert {r.status_code for r in responses} == {201, 422}


async def test_best_multiplier_mode(app, client, program, sql):
    rules = [
        BASE,
        {"id": "coffee-x2", "kind": "item_multiplier", "categories": ["coffee"], "multiplier": "2"},
        {
            "id": "all-x3",
            "kind": "campaign_multiplier",
            "multiplier": "3",
            "window": {"starts_on": "2020-01-01", "ends_on": "2099-12-31"},
        },
    ]
    items = [{"sku": "latte", "category": "coffee", "quantity": 1, "unit_price": 1000}]
    await set_rules(app, sql, program, rules, multiplier_mode="stack")
    stacked = await earn_order(client, program, "jo", 1000, items=items)
    await set_rules(app, sql, program, rules, multiplier_mode="best")
    best = await earn_order(client, program, "jo", 1000, items=items)
    assert stacked.json()["points"] == 60  # 10 x2 x3
    assert best.json()["points"] == 30  # only the best multiplier, x3


async def test_a_rule_change_never_rewrites_earlier_earns(app, client, program, sql):
    before = await earn_order(client, program, "kim", 1000)
    await set_rules(app, sql, program, [{**BASE, "points_per_unit": "5"}])
    after = await earn_order(client, program, "kim", 1000)
    assert (before.json()["points"], before.json()["rules_version"]) == (10, 1)
    assert (after.json()["points"], after.json()["rules_version"]) == (50, 2)
    history = (await client.get("/v1/members/kim/transactions", headers=program.headers)).json()
    versions = sorted(t["metadata"]["rules_version"] for t in history["items"])
    assert versions == [1, 2]


async def test_replaying_an_earn_replays_the_breakdown(app, client, program, sql):
    await set_rules(
        app,
        sql,
        program,
        [BASE, {"id": "welcome", "kind": "first_purchase_bonus", "points": 100}],
    )
    key = new_key()
    order = {"id": "o-replay", "amount": 1000, "currency": EUR}
    first = await client.post(
        "/v1/earn", json={"member": "lu", "order": order}, headers=program.write_headers(key)
    )
    again = await client.post(
        "/v1/earn", json={"member": "lu", "order": order}, headers=program.write_headers(key)
    )
    assert first.status_code == again.status_code == 201
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json() == first.json()
    assert lines(again) == {"base": 10, "welcome": 100}


async def test_replaying_an_earn_whose_points_are_all_bonus_replays_it(app, client, program, sql):
    """The replay is answered from the stored response, not recomputed: recomputed for a
    member the rules know nothing about, this order (below the base rate's minimum) would earn
    nothing and be refused. The same key with another body is still a conflict."""
    minimum = {**BASE, "min_order_amount": 5000}
    await set_rules(
        app,
        sql,
        program,
        [minimum, {"id": "welcome", "kind": "first_purchase_bonus", "points": 100}],
    )
    key = new_key()
    order = {"id": "o-bonus-only", "amount": 1000, "currency": EUR}
    first = await client.post(
        "/v1/earn", json={"member": "bo", "order": order}, headers=program.write_headers(key)
    )
    assert first.status_code == 201, first.text
    assert lines(first) == {"welcome": 100}
    again = await client.post(
        "/v1/earn", json={"member": "bo", "order": order}, headers=program.write_headers(key)
    )
    assert (again.status_code, again.headers.get("Idempotent-Replayed")) == (201, "true")
    assert again.content == first.content
    other = await client.post(
        "/v1/earn",
        json={"member": "bo", "order": {**order, "amount": 900}},
        headers=program.write_headers(key),
    )
    assert other.status_code == 409
    assert other.json()["code"] == "idempotency_conflict"


async def test_metadata_keys_of_the_rules_are_reserved(client, program, sql):
    response = await earn_order(client, program, "mo", 1000, metadata={"breakdown": "x"})
    assert response.status_code == 422
    assert (
        await sql.fetchval("SELECT count(*) FROM transactions WHERE program_id = $1", program.id)
        == 0
    )


async def test_quote_matches_the_earn_and_writes_nothing(app, client, program, sql):
    await set_rules(
        app,
        sql,
        program,
        [BASE, {"id": "welcome", "kind": "first_purchase_bonus", "points": 100}],
    )
    quote_body = {"member": "ned", "order": {"amount": 2000, "currency": EUR}}
    quote = await client.post("/v1/quotes", json=quote_body, headers=program.headers)
    assert quote.status_code == 200, quote.text
    assert quote.json()["earn_points"] == 120
    assert await sql.fetchval("SELECT count(*) FROM members WHERE program_id = $1", program.id) == 0
    earned = await earn_order(client, program, "ned", 2000)
    assert quote.json()["breakdown"] == earned.json()["breakdown"]
    second_quote = await client.post("/v1/quotes", json=quote_body, headers=program.headers)
    assert second_quote.json()["earn_points"] == 20  # the welcome bonus is spent


async def test_batched_events_see_each_other_under_member_rules(app, client, program, sql):
    await set_rules(
        app,
        sql,
        program,
        [BASE, {"id": "welcome", "kind": "first_purchase_bonus", "points": 100}],
    )
    events = [
        {
            "id": f"e-{i}-{new_key()}",
            "type": "earn",
            "member": "oz",
            "order": {"id": f"o-b-{i}", "amount": 1000, "currency": EUR},
        }
        for i in range(3)
    ]
    events.append({"id": f"e-r-{new_key()}", "type": "redeem", "member": "oz", "points": 125})
    response = await client.post(
        "/v1/events/batch", json={"events": events}, headers=program.write_headers()
    )
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert [r["status"] for r in results] == ["posted"] * 4
    assert [r["points"] for r in results] == [110, 10, 10, 125]
    again = await client.post(
        "/v1/events/batch", json={"events": events}, headers=program.write_headers()
    )
    assert [r["status"] for r in again.json()["results"]] == ["duplicate"] * 4
