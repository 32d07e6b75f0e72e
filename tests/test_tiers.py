"""Tier status as a projection of the ledger: upgrades, downgrades after grace, paid
memberships, refunds, the earn multiplier, verify/rebuild, and concurrent evaluation.

Programs get their tiers by SQL (`UPDATE programs SET tier_program = ...`) and the app's
program cache is cleared. Days in the future are reached by calling `refresh_tier` with a later
`today`, as the lazy evaluation would on that day.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, date, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.db import Database
from app.domain.dates import local_date
from app.domain.tiers import Membership, QualifyingEvent, TierProgram, TierStatus
from app.ledger.rebuild import rebuild
from app.ledger.verify import verify
from app.programs.repository import program_by_id
from app.tiers.checks import rebuild_tiers
from app.tiers.projection import (
    EventDay,
    evaluate_from,
    from_scratch,
    must_restart,
    qualifying_events,
)
from app.tiers.service import refresh_tier
from tests.support import TestProgram, earn, new_key

TIERS: dict[str, Any] = {
    "metric": "qualifying_points",
    "period": "calendar_year",
    "grace_days": 30,
    "tiers": [
        {"code": "member", "name": "Member", "threshold": 0},
        {"code": "silver", "name": "Silver", "threshold": 1000, "earn_multiplier": "1.5"},
        {"code": "gold", "name": "Gold", "threshold": 2500, "earn_multiplier": "2"},
    ],
}
LADDER = TierProgram.model_validate(TIERS)


def today() -> date:
    return local_date(datetime.now(UTC), "UTC")


async def set_tiers(
    sql: asyncpg.Connection, app: Any, program: TestProgram, tiers: dict[str, Any] | None = TIERS
) -> None:
    await sql.execute(
        "UPDATE programs SET tier_program = $1::jsonb WHERE id = $2",
        None if tiers is None else json.dumps(tiers),
        program.id,
    )
    app.state.auth_caches.programs.clear()


async def member_id(sql: asyncpg.Connection, program: TestProgram, member: str) -> int:
    found: int = await sql.fetchval(
        "SELECT id FROM members WHERE program_id = $1 AND external_id = $2", program.id, member
    )
    return found


async def refresh(
    database: Database, program: TestProgram, member_id: int, day: date
) -> TierStatus:
    """What the lazy evaluation does on `day`: refresh_tier under the member's lock."""
    async with database.single() as db:
        loaded = await program_by_id(db, program.id)
    assert loaded is not None
    async with database.lock_members(program.id, [member_id]) as locks:
        return (await refresh_tier(locks, loaded, member_id, day)).status


async def get_tier(client: httpx.AsyncClient, program: TestProgram, member: str) -> Any:
    response = await client.get(f"/v1/members/{member}/tier", headers=program.headers)
    assert response.status_code == 200, response.text
    return response.json()


async def stored(sql: asyncpg.Connection, member_id: int) -> Any:
    return await sql.fetchrow(
        "SELECT tier, status::text AS status, evaluated_on FROM member_tiers WHERE member_id = $1",
        member_id,
    )


async def tier_drift(database: Database, member_id: int) -> list[dict[str, Any]]:
    report = await verify(database)
    (result,) = [r for r in report.results if r.name == "tiers_match_ledger"]
    return [row for row in result.offending if row["member_id"] == member_id]


def year_end(day: date) -> date:
    return date(day.year, 12, 31)


# --- the evaluation used by the service: stepping equals evaluating once -----------------------

JAN_1 = date(2026, 1, 1)


def _days(recorded: list[tuple[date, int, int]], written: int) -> list[EventDay]:
    """Daily totals as the repository gives them; `late`: arrived after the last write."""
    by_day: dict[date, EventDay] = {}
    for day, amount, index in recorded:
        late = index > written
        was = by_day.get(day, EventDay(day, 0))
        by_day[day] = EventDay(
            day,
            was.amount + amount,
            was.late or late,
            was.late_negative or (late and amount < 0),
        )
    return [by_day[day] for day in sorted(by_day)]


@settings(max_examples=200, deadline=None)
@given(
    arrivals=st.lists(
        st.tuples(
            st.integers(min_value=0, max_value=30),  # days backdated
            st.integers(min_value=-400, max_value=1500),  # credit (negative: refund)
            st.sampled_from([0, 0, 0, 1, 2, 40, 200]),  # days the clock moves first
        ),
        min_size=1,
        max_size=14,
    ),
    membership=st.one_of(
        st.none(),
        st.tuples(
            st.sampled_from(["silver", "gold"]),
            st.integers(min_value=0, max_value=500),
            st.integers(min_value=0, max_value=120),
        ),
    ),
    grace=st.sampled_from([0, 30]),
    rolling=st.booleans(),
)
def test_lazy_evaluation_agrees_with_evaluation_from_scratch(
    arrivals: list[tuple[int, int, int]],
    membership: tuple[str, int, int] | None,
    grace: int,
    rolling: bool,
) -> None:
    """The service's evaluation, simulated: credit arrives (several a day, backdated, refunds),
    and after each arrival the status is brought to the clock's day from the stored one, or
    from scratch when `must_restart` says so; it is stored when it changed. What `verify` then
    recomputes from scratch (to the stored day) is what was stored."""
    program = LADDER.model_copy(
        update={
            "grace_days": grace,
            "period": "rolling" if rolling else "calendar_year",
            "rolling_months": 12 if rolling else None,
        }
    )
    memberships = []
    if membership is not None:
        tier, start, days = membership
        first = JAN_1 + timedelta(days=start)
        memberships.append(Membership(tier=tier, starts_on=first, ends_on=first + timedelta(days)))
    clock = JAN_1
    recorded: list[tuple[date, int, int]] = []
    status: TierStatus | None = None
    evaluated_on = JAN_1
    written = -1
    for index, (back, amount, advance) in enumerate(arrivals):
        clock += timedelta(days=advance)
        recorded.append((max(JAN_1, clock - timedelta(days=back)), amount, index))
        days = _days(recorded, written)
        events = qualifying_events(days)
        if status is None or must_restart(days, status, evaluated_on):
            new = from_scratch(program, JAN_1, events, memberships, clock).status
            scratch = True
        else:
            new = evaluate_from(program, events, status, memberships, clock).status
            scratch = False
        if scratch or new != status:
            status, evaluated_on, written = new, clock, index
    assert status is not None
    everything = qualifying_events(_days(recorded, written))
    seen = [(day, amount, i) for day, amount, i in recorded if i <= written]
    assert status in (
        from_scratch(program, JAN_1, everything, memberships, evaluated_on).status,
        from_scratch(
            program, JAN_1, qualifying_events(_days(seen, -1)), memberships, evaluated_on
        ).status,
    )


def test_a_second_purchase_on_the_upgrade_day_upgrades_again() -> None:
    day = date(2026, 5, 10)
    silver = from_scratch(LADDER, JAN_1, [QualifyingEvent(day, 1200)], [], day).status
    assert (silver.tier, silver.since) == ("silver", day)
    both = [QualifyingEvent(day, 1200), QualifyingEvent(day, 1500)]
    gold = evaluate_from(LADDER, both, silver, [], day).status
    assert (gold.tier, gold.since, gold.reason) == ("gold", day, "upgraded")


# --- the API -----------------------------------------------------------------------------------


async def test_tier_endpoints_need_tiers(client: httpx.AsyncClient, program: TestProgram) -> None:
    assert (await earn(client, program, "t-none", 100)).status_code == 201
    response = await client.get("/v1/members/t-none/tier", headers=program.headers)
    assert response.status_code == 409
    assert response.json()["code"] == "tiers_not_configured"
    response = await client.post(
        "/v1/members/t-none/memberships",
        json={"tier": "gold", "starts_at": "2026-01-01", "ends_at": "2026-12-31"},
        headers=program.write_headers(),
    )
    assert response.json()["code"] == "tiers_not_configured"


async def test_unknown_member_is_404(
    client: httpx.AsyncClient, program: TestProgram, sql: asyncpg.Connection, app: Any
) -> None:
    await set_tiers(sql, app, program)
    response = await client.get("/v1/members/nobody/tier", headers=program.headers)
    assert response.status_code == 404
    assert response.json()["code"] == "member_not_found"


async def test_upgrade_as_soon_as_the_threshold_is_reached(
    client: httpx.AsyncClient, program: TestProgram, sql: asyncpg.Connection, app: Any
) -> None:
    await set_tiers(sql, app, program)
    day = today()
    assert (await earn(client, program, "t-up", 600)).status_code == 201
    body = await get_tier(client, program, "t-up")
    assert body["tier"] == {"code": "member", "name": "Member", "earn_multiplier": "1"}
    assert (body["since"], body["reason"], body["guaranteed_until"]) == (
        day.isoformat(),
        "initial",
        None,
    )
    assert body["progress"]["needed"] == 400
    assert body["progress"]["summary"] == (
        f"400 more qualifying points by {year_end(day).isoformat()} for silver"
    )
    assert body["retention"] is None

    assert (await earn(client, program, "t-up", 500)).status_code == 201
    body = await get_tier(client, program, "t-up")
    assert body["tier"]["code"] == "silver"
    assert body["tier"]["earn_multiplier"] == "1.5"
    assert (body["since"], body["reason"]) == (day.isoformat(), "upgraded")
    assert body["guaranteed_until"] == year_end(day).isoformat()
    assert body["progress"]["tier"] == "gold"
    assert (body["progress"]["current"], body["progress"]["needed"]) == (1100, 1400)
    assert body["retention"]["needed"] == 0
    assert body["membership"] is None
    assert body["evaluated_on"] == day.isoformat()

    # the same day, a purchase that reaches gold: gold at once
    assert (await earn(client, program, "t-up", 1500)).status_code == 201
    body = await get_tier(client, program, "t-up")
    assert (body["tier"]["code"], body["since"]) == ("gold", day.isoformat())
    assert body["progress"] is None  # gold is the top
    row = await stored(sql, await member_id(sql, program, "t-up"))
    assert row["tier"] == "gold"
    assert json.loads(row["status"])["tier"] == "gold"


async def test_an_earn_stores_the_upgrade_at_once(
    client: httpx.AsyncClient, program: TestProgram, sql: asyncpg.Connection, app: Any
) -> None:
    """Needs the lead's earn wiring: an earn computed by the rules (an order, no explicit
    points) refreshes the tier inside its transaction."""
    await set_tiers(sql, app, program)
    order = {"id": new_key(), "amount": 120_000, "currency": "EUR"}
    response = await earn(client, program, "t-at-once", None, order=order)  # type: ignore[arg-type]
    assert response.status_code == 201, response.text
    row = await stored(sql, await member_id(sql, program, "t-at-once"))
    assert row is not None and row["tier"] == "silver"


async def test_the_tier_multiplier_applies_to_earns(
    client: httpx.AsyncClient, program: TestProgram, sql: asyncpg.Connection, app: Any
) -> None:
    """Needs the lead's earn wiring (tier earn_multiplier in the rules)."""
    await set_tiers(sql, app, program)
    first = {"id": new_key(), "amount": 100_000, "currency": "EUR"}  # 1,000 points: silver
    response = await earn(client, program, "t-mult", None, order=first)  # type: ignore[arg-type]
    assert response.status_code == 201, response.text
    assert response.json()["points"] == 1000
    second = {"id": new_key(), "amount": 10_000, "currency": "EUR"}  # 100 at base x 1.5
    response = await earn(client, program, "t-mult", None, order=second)  # type: ignore[arg-type]
    assert response.status_code == 201, response.text
    assert response.json()["points"] == 150


async def test_downgrade_only_after_the_review_and_the_grace(
    client: httpx.AsyncClient,
    program: TestProgram,
    sql: asyncpg.Connection,
    app: Any,
    database: Database,
) -> None:
    await set_tiers(sql, app, program)
    day = today()
    assert (await earn(client, program, "t-down", 1200)).status_code == 201
    assert (await get_tier(client, program, "t-down"))["tier"]["code"] == "silver"
    mid = await member_id(sql, program, "t-down")
    year = day.year

    # 1 January: the review of this year counts 1,200: silver is renewed for next year.
    status = await refresh(database, program, mid, date(year + 1, 1, 1))
    assert (status.tier, status.reason, status.guaranteed_until) == (
        "silver",
        "renewed",
        date(year + 1, 12, 31),
    )
    # The next review finds nothing earned: 30 days of grace, then the base tier.
    status = await refresh(database, program, mid, date(year + 2, 1, 15))
    assert (status.tier, status.reason, status.downgrade_on) == (
        "silver",
        "grace",
        date(year + 2, 1, 31),
    )
    status = await refresh(database, program, mid, date(year + 2, 1, 30))
    assert status.tier == "silver"
    status = await refresh(database, program, mid, date(year + 2, 1, 31))
    assert (status.tier, status.reason, status.since) == (
        "member",
        "downgraded",
        date(year + 2, 1, 31),
    )
    row = await stored(sql, mid)
    assert (row["tier"], row["evaluated_on"]) == ("member", date(year + 2, 1, 31))
    assert await tier_drift(database, mid) == []
    # Reading today starts again from scratch (the stored status is from a later day).
    body = await get_tier(client, program, "t-down")
    assert (body["tier"]["code"], body["evaluated_on"]) == ("silver", day.isoformat())


async def test_a_refund_costs_the_tier_at_the_next_review(
    client: httpx.AsyncClient,
    program: TestProgram,
    sql: asyncpg.Connection,
    app: Any,
    database: Database,
) -> None:
    """The order is bought two days ago (a refund the same day would net it out of that
    day's total: it never counted) and half refunded today."""
    await set_tiers(sql, app, program)
    day = today()
    if (day - timedelta(days=2)).year != day.year:
        pytest.skip("needs two days of this calendar year behind it")
    order = {"id": new_key(), "amount": 120_000, "currency": "EUR"}
    bought = (datetime.now(UTC) - timedelta(days=2)).isoformat()
    response = await earn(client, program, "t-refund", 1200, order=order, occurred_at=bought)
    assert response.status_code == 201, response.text
    assert (await get_tier(client, program, "t-refund"))["tier"]["code"] == "silver"

    response = await client.post(
        f"/v1/orders/{order['id']}/refunds",
        json={"amount": 60_000, "currency": "EUR"},
        headers=program.write_headers(),
    )
    assert response.status_code == 201, response.text
    mid = await member_id(sql, program, "t-refund")
    qualifying = await sql.fetchval(
        "SELECT balance FROM accounts WHERE member_id = $1 AND asset = 'qualifying'", mid
    )
    assert qualifying == 600  # half the money back: half the qualifying credit

    # Still silver (guaranteed to the end of the year), but 400 short for the review.
    body = await get_tier(client, program, "t-refund")
    assert body["tier"]["code"] == "silver"
    assert body["retention"]["tier"] == "silver"
    assert (body["retention"]["current"], body["retention"]["needed"]) == (600, 400)
    assert body["retention"]["by"] == year_end(day).isoformat()

    status = await refresh(database, program, mid, date(day.year + 1, 1, 1))
    assert (status.tier, status.reason) == ("silver", "grace")
    assert status.downgrade_on == date(day.year + 1, 1, 31)
    status = await refresh(database, program, mid, date(day.year + 1, 1, 31))
    assert (status.tier, status.reason) == ("member", "downgraded")
    assert await tier_drift(database, mid) == []


async def test_an_order_refunded_the_day_it_was_bought_never_counted(
    client: httpx.AsyncClient,
    program: TestProgram,
    sql: asyncpg.Connection,
    app: Any,
    database: Database,
) -> None:
    """Tiers follow each day's net credit: bought and fully refunded today, no upgrade stays."""
    await set_tiers(sql, app, program)
    order = {"id": new_key(), "amount": 120_000, "currency": "EUR"}
    assert (await earn(client, program, "t-sameday", 1200, order=order)).status_code == 201
    assert (await get_tier(client, program, "t-sameday"))["tier"]["code"] == "silver"
    response = await client.post(
        f"/v1/orders/{order['id']}/refunds",
        json={"amount": 120_000, "currency": "EUR"},
        headers=program.write_headers(),
    )
    assert response.status_code == 201, response.text
    body = await get_tier(client, program, "t-sameday")
    assert (body["tier"]["code"], body["reason"]) == ("member", "initial")
    assert await tier_drift(database, await member_id(sql, program, "t-sameday")) == []


async def test_a_paid_membership_grants_a_tier_and_ends(
    client: httpx.AsyncClient,
    program: TestProgram,
    sql: asyncpg.Connection,
    app: Any,
    database: Database,
) -> None:
    await set_tiers(sql, app, program)
    day = today()
    assert (await earn(client, program, "t-vip", 1200)).status_code == 201  # silver earned
    grant = {
        "tier": "gold",
        "starts_at": day.isoformat(),
        "ends_at": (day + timedelta(days=10)).isoformat(),
        "payment_ref": "pay-123",
    }
    key = new_key()
    response = await client.post(
        "/v1/members/t-vip/memberships", json=grant, headers=program.write_headers(key)
    )
    assert response.status_code == 201, response.text
    body = response.json()
    membership = body["membership"]
    assert (membership["tier"], membership["starts_on"], membership["ends_on"]) == (
        "gold",
        day.isoformat(),
        (day + timedelta(days=10)).isoformat(),
    )
    assert (membership["member"], membership["payment_ref"]) == ("t-vip", "pay-123")
    assert body["tier"]["tier"]["code"] == "gold"
    assert body["tier"]["reason"] == "membership"
    assert body["tier"]["earned"]["tier"] == "silver"

    replay = await client.post(
        "/v1/members/t-vip/memberships", json=grant, headers=program.write_headers(key)
    )
    assert replay.status_code == 201
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert replay.json() == body
    conflict = await client.post(
        "/v1/members/t-vip/memberships",
        json={**grant, "tier": "silver"},
        headers=program.write_headers(key),
    )
    assert conflict.status_code == 409

    tier = await get_tier(client, program, "t-vip")
    assert tier["tier"]["code"] == "gold"
    assert tier["membership"]["id"] == membership["id"]
    # gold is guaranteed through the membership's last day
    assert tier["guaranteed_until"] == (day + timedelta(days=10)).isoformat()

    listed = await client.get("/v1/members/t-vip/memberships", headers=program.headers)
    assert listed.status_code == 200
    assert [m["id"] for m in listed.json()["items"]] == [membership["id"]]
    assert listed.json()["next_cursor"] is None

    # the day after the term: back to the tier qualified for
    mid = await member_id(sql, program, "t-vip")
    status = await refresh(database, program, mid, day + timedelta(days=11))
    assert (status.tier, status.reason) == ("silver", "membership_ended")
    assert await tier_drift(database, mid) == []


async def test_membership_terms_and_tiers_are_checked(
    client: httpx.AsyncClient, program: TestProgram, sql: asyncpg.Connection, app: Any
) -> None:
    await set_tiers(sql, app, program)
    assert (await earn(client, program, "t-terms", 10)).status_code == 201

    async def grant(**body: Any) -> httpx.Response:
        return await client.post(
            "/v1/members/t-terms/memberships",
            json={"tier": "gold", "starts_at": "2026-06-01", "ends_at": "2026-06-30", **body},
            headers=program.write_headers(),
        )

    response = await grant(tier="platinum")
    assert (response.status_code, response.json()["code"]) == (422, "unknown_tier")
    response = await grant(ends_at="2026-05-31")
    assert (response.status_code, response.json()["code"]) == (422, "membership_term_invalid")
    response = await grant(starts_at="1066-10-14")
    assert (response.status_code, response.json()["code"]) == (422, "membership_term_invalid")
    response = await grant(starts_at=1780000000)
    assert (response.status_code, response.json()["code"]) == (422, "validation_error")
    response = await grant(starts_at="2026-06-01T09:00:00")  # an instant needs its zone
    assert (response.status_code, response.json()["code"]) == (422, "validation_error")
    response = await client.post(
        "/v1/members/nobody/memberships",
        json={"tier": "gold", "starts_at": "2026-06-01", "ends_at": "2026-06-30"},
        headers=program.write_headers(),
    )
    assert (response.status_code, response.json()["code"]) == (404, "member_not_found")
    no_key = await client.post(
        "/v1/members/t-terms/memberships",
        json={"tier": "gold", "starts_at": "2026-06-01", "ends_at": "2026-06-30"},
        headers=program.headers,
    )
    assert no_key.status_code == 400
    read_only = await program.key_with("read")
    forbidden = await client.post(
        "/v1/members/t-terms/memberships",
        json={"tier": "gold", "starts_at": "2026-06-01", "ends_at": "2026-06-30"},
        headers=program.write_headers(api_key=read_only),
    )
    assert forbidden.status_code == 403

    # Instants: the start's local date; the end is exclusive (midnight ends the day before).
    response = await grant(starts_at="2026-06-01T09:30:00+02:00", ends_at="2026-07-01T00:00:00Z")
    assert response.status_code == 201, response.text
    membership = response.json()["membership"]
    assert (membership["starts_on"], membership["ends_on"]) == ("2026-06-01", "2026-06-30")
    assert membership["payment_ref"] is None

    listed = await client.get(
        "/v1/members/t-terms/memberships?limit=1", headers={"Authorization": f"Bearer {read_only}"}
    )
    assert listed.status_code == 200
    assert len(listed.json()["items"]) == 1
    bad_cursor = await client.get(
        "/v1/members/t-terms/memberships?cursor=zzz", headers=program.headers
    )
    assert (bad_cursor.status_code, bad_cursor.json()["code"]) == (400, "invalid_cursor")


async def test_a_backdated_earn_counts_on_its_own_day(
    client: httpx.AsyncClient,
    program: TestProgram,
    sql: asyncpg.Connection,
    app: Any,
    database: Database,
) -> None:
    """The stored status starts today; an earn dated five days ago (before it) is replayed
    from scratch, so the upgrade is dated on the day it happened."""
    await set_tiers(sql, app, program)
    day = today()
    assert (await earn(client, program, "t-back", 100)).status_code == 201
    assert (await get_tier(client, program, "t-back"))["since"] == day.isoformat()
    occurred = (datetime.now(UTC) - timedelta(days=5)).isoformat()
    response = await earn(client, program, "t-back", 1500, occurred_at=occurred)
    assert response.status_code == 201, response.text
    body = await get_tier(client, program, "t-back")
    assert (body["tier"]["code"], body["since"]) == ("silver", (day - timedelta(5)).isoformat())
    assert await tier_drift(database, await member_id(sql, program, "t-back")) == []


async def test_verify_finds_a_tampered_status_and_rebuild_fixes_it(
    client: httpx.AsyncClient,
    program: TestProgram,
    sql: asyncpg.Connection,
    app: Any,
    database: Database,
) -> None:
    await set_tiers(sql, app, program)
    assert (await earn(client, program, "t-tamper", 1200)).status_code == 201
    assert (await get_tier(client, program, "t-tamper"))["tier"]["code"] == "silver"
    mid = await member_id(sql, program, "t-tamper")
    assert await tier_drift(database, mid) == []
    original = await stored(sql, mid)

    await sql.execute(
        """
        UPDATE member_tiers
           SET tier = 'gold',
               status = jsonb_set(jsonb_set(status, '{tier}', '"gold"'), '{earned,tier}', '"gold"')
         WHERE member_id = $1
        """,
        mid,
    )
    drift = await tier_drift(database, mid)
    assert len(drift) == 1
    assert drift[0]["program_id"] == program.id
    assert drift[0]["stored"]["tier"] == "gold"
    assert drift[0]["expected"]["tier"] == "silver"

    corrected = await rebuild(database)
    assert corrected >= 1
    repaired = await stored(sql, mid)
    assert repaired["tier"] == "silver"
    assert json.loads(repaired["status"]) == json.loads(original["status"])
    assert await tier_drift(database, mid) == []


async def test_rebuild_brings_a_stale_status_up_to_date_without_calling_it_a_correction(
    client: httpx.AsyncClient,
    program: TestProgram,
    sql: asyncpg.Connection,
    app: Any,
    database: Database,
) -> None:
    """A status evaluated last year is not wrong, only not evaluated since: rebuild moves it
    to the new day (here past the review and the grace: down to member) and counts nothing;
    a member never evaluated gets a status, also uncounted."""
    await set_tiers(sql, app, program)
    assert (await earn(client, program, "t-stale", 1200)).status_code == 201
    assert (await get_tier(client, program, "t-stale"))["tier"]["code"] == "silver"
    stale = await member_id(sql, program, "t-stale")
    enrolled = await client.post(
        "/v1/members", json={"external_id": "t-never"}, headers=program.write_headers()
    )
    assert enrolled.status_code == 201, enrolled.text
    never = await member_id(sql, program, "t-never")
    assert await stored(sql, never) is None
    later = year_end(today()) + timedelta(days=400)

    noon = datetime(later.year, later.month, later.day, 12, tzinfo=UTC)
    corrected = await rebuild_tiers(database, program_id=program.id, now=noon)

    assert corrected == 0
    moved = await stored(sql, stale)
    assert (moved["tier"], moved["evaluated_on"]) == ("member", later)
    assert (await stored(sql, never))["evaluated_on"] == later
    assert await tier_drift(database, stale) == []


async def test_concurrent_reads_and_earns_leave_one_consistent_status(
    client: httpx.AsyncClient,
    program: TestProgram,
    sql: asyncpg.Connection,
    app: Any,
    database: Database,
) -> None:
    await set_tiers(sql, app, program)
    assert (await earn(client, program, "t-busy", 100)).status_code == 201

    async def read() -> int:
        response = await client.get("/v1/members/t-busy/tier", headers=program.headers)
        return response.status_code

    async def earn_some() -> int:
        return (await earn(client, program, "t-busy", 150)).status_code

    codes = await asyncio.gather(*(read() if i % 2 else earn_some() for i in range(20)))
    assert sorted(set(codes)) == [200, 201]
    mid = await member_id(sql, program, "t-busy")
    assert await sql.fetchval("SELECT count(*) FROM member_tiers WHERE member_id = $1", mid) == 1
    body = await get_tier(client, program, "t-busy")
    assert body["tier"]["code"] == "silver"  # 100 + 10 x 150 = 1,600
    assert body["progress"]["current"] == 1600
    assert await tier_drift(database, mid) == []


async def test_removing_tiers_from_the_program_hides_the_tier(
    client: httpx.AsyncClient, program: TestProgram, sql: asyncpg.Connection, app: Any
) -> None:
    await set_tiers(sql, app, program)
    assert (await earn(client, program, "t-off", 1200)).status_code == 201
    assert (await get_tier(client, program, "t-off"))["tier"]["code"] == "silver"
    # a new ladder without silver: the stored status names an unknown tier, and is recomputed
    ladder = {**TIERS, "tiers": [TIERS["tiers"][0], {**TIERS["tiers"][2], "threshold": 1100}]}
    await set_tiers(sql, app, program, ladder)
    assert (await get_tier(client, program, "t-off"))["tier"]["code"] == "gold"
    await set_tiers(sql, app, program, None)
    response = await client.get("/v1/members/t-off/tier", headers=program.headers)
    assert response.status_code == 409


@pytest.fixture(autouse=True)
def _no_stale_programs(app: Any) -> None:
    app.state.auth_caches.programs.clear()


async def test_a_reversed_earn_takes_its_qualifying_credit_back(
    client: httpx.AsyncClient,
    program: TestProgram,
    sql: asyncpg.Connection,
    app: Any,
    database: Database,
) -> None:
    """A reversal posts the exact opposite of every leg, qualifying included. Reversed on a
    later day, it counts at the next review: the member keeps silver through the guarantee and
    the grace, then moves down. (Reversed the same day, the day's net credit is zero and the
    upgrade never happened: see the same-day refund test above.)"""
    rolling = {**TIERS, "period": "rolling", "rolling_months": 12}
    await set_tiers(sql, app, program, rolling)
    earned_on = today() - timedelta(days=2)
    order = {"id": new_key(), "amount": 120_000, "currency": "EUR"}
    response = await earn(
        client,
        program,
        "t-reversed",
        None,  # type: ignore[arg-type]
        order=order,
        occurred_at=f"{earned_on.isoformat()}T12:00:00Z",
    )
    assert response.status_code == 201, response.text
    assert response.json()["qualifying"] == 1200
    reversed_ = await client.post(
        f"/v1/transactions/{response.json()['transaction_id']}/reverse",
        json={"reason": "fraud"},
        headers=program.write_headers(),
    )
    assert reversed_.status_code == 201, reversed_.text
    member = await member_id(sql, program, "t-reversed")
    qualifying = await sql.fetchval(
        "SELECT balance FROM accounts WHERE member_id = $1 AND asset = 'qualifying'", member
    )
    assert qualifying == 0
    now_tier = await get_tier(client, program, "t-reversed")
    assert now_tier["tier"]["code"] == "silver"
    guaranteed = date.fromisoformat(now_tier["guaranteed_until"])
    in_grace = await refresh(database, program, member, guaranteed + timedelta(days=1))
    assert (in_grace.tier, in_grace.reason) == ("silver", "grace")
    after_grace = guaranteed + timedelta(days=rolling["grace_days"] + 1)
    assert (await refresh(database, program, member, after_grace)).tier == "member"
