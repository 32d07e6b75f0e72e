"""Referrals: codes, links at enrolment, the bonus on the first qualifying order, the abuse
controls (self-referral, one referrer, monthly cap) and the clawback on refunds.

Worked example used throughout (after app.domain.referrals): a EUR program earning 1 point per
euro; Ana refers friends; the bonus is 500 points for Ana and 250 for the friend on the friend's
first order of at least EUR 20.00, at most 2 rewarded referrals per referrer per month, clawed
back when the order is refunded within 14 days.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from tests.conftest import make_program
from tests.support import available, new_key, redeem, run_cli

POLICY = {
    "referrer_points": 500,
    "referee_points": 250,
    "min_order_amount": 2000,
    "monthly_cap": 2,
    "return_window_days": 14,
}


async def with_referrals(app, sql, program, **changes: Any) -> None:
    """Turn referrals on (settings over SQL; PUT /v1/program is another feature) and drop the
    cached program so the next request sees them."""
    policy = {**POLICY, **changes}
    await sql.execute(
        "UPDATE programs SET referral_policy = $2::jsonb WHERE id = $1",
        program.id,
        orjson.dumps(policy).decode(),
    )
    app.state.auth_caches.programs.clear()


async def enrol(client, program, external_id: str, key: str | None = None, **body: Any):
    return await client.post(
        "/v1/members",
        json={"external_id": external_id, **body},
        headers=program.write_headers(key),
    )


async def code_of(client, program, external_id: str) -> str:
    response = await client.get(f"/v1/members/{external_id}", headers=program.headers)
    assert response.status_code == 200, response.text
    code: str = response.json()["referral_code"]
    return code


async def member_with_code(client, program, external_id: str, **body: Any) -> str:
    response = await enrol(client, program, external_id, **body)
    assert response.status_code == 201, response.text
    code: str = response.json()["referral_code"]
    return code


async def order(client, program, member: str, order_id: str, amount: int, **extra: Any):
    response = await client.post(
        "/v1/earn",
        json={"member": member, "order": {"id": order_id, "amount": amount, "currency": "EUR"}}
        | extra,
        headers=program.write_headers(),
    )
    assert response.status_code == 201, response.text
    return response.json()


async def refund(client, program, order_id: str, amount: int, key: str | None = None):
    return await client.post(
        f"/v1/orders/{order_id}/refunds",
        json={"amount": amount, "currency": "EUR"},
        headers=program.write_headers(key),
    )


async def referrals_of(client, program, external_id: str) -> list[dict[str, Any]]:
    response = await client.get(f"/v1/members/{external_id}/referrals", headers=program.headers)
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


async def referral_transactions(sql, program) -> list[Any]:
    return await sql.fetch(
        "SELECT id, member_id, order_id, reason, metadata::text AS metadata FROM transactions"
        " WHERE program_id = $1 AND kind = 'referral' ORDER BY id",
        program.id,
    )


async def legs(sql, transaction_id: int) -> list[tuple[str, str, int]]:
    """(member external id or "program", account kind, amount) of each entry."""
    rows = await sql.fetch(
        "SELECT coalesce(m.external_id, 'program') AS external_id, a.kind, e.amount"
        " FROM entries e JOIN accounts a ON a.id = e.account_id"
        " LEFT JOIN members m ON m.id = e.member_id"
        " WHERE e.transaction_id = $1 ORDER BY e.leg",
        transaction_id,
    )
    return sorted((row["external_id"], row["kind"], row["amount"]) for row in rows)


def days_ago(days: float) -> str:
    return (datetime.now(UTC) - timedelta(days=days)).isoformat()


# Codes and links ------------------------------------------------------------------------------


async def test_every_member_has_a_code_and_enrolling_with_one_records_a_pending_referral(
    client, program, app, sql
):
    await with_referrals(app, sql, program)
    ana_code = await member_with_code(client, program, "ana")
    assert len(ana_code) == 8 and ana_code == await code_of(client, program, "ana")
    # typed by hand: lower case, with a dash and spaces
    typed = f" {ana_code[:4].lower()}-{ana_code[4:].lower()} "
    key = new_key()
    first = await enrol(client, program, "ben", key=key, referral_code=typed)
    assert first.status_code == 201, first.text
    assert first.json()["referral_code"] not in (ana_code, None)
    # replaying the key answers the same, records nothing more
    replay = await enrol(client, program, "ben", key=key, referral_code=typed)
    assert replay.headers.get("Idempotent-Replayed") == "true"
    assert replay.json() == first.json()
    # a retry under a new key with the same code is the member as it stands
    again = await enrol(client, program, "ben", referral_code=ana_code)
    assert again.status_code == 200, again.text
    [made] = await referrals_of(client, program, "ana")
    assert (made["referee"], made["status"], made["order_id"]) == ("ben", "pending", None)
    assert await referrals_of(client, program, "ben") == []


async def test_an_unknown_code_fails_the_enrolment(client, program, other_program, app, sql):
    stranger = await member_with_code(client, other_program, "zed")
    for code in ("nope!", "33333333", stranger):
        response = await enrol(client, program, "ben", referral_code=code)
        assert response.status_code == 422, response.text
        assert response.json()["code"] == "referral_code_unknown"
    # nothing was enrolled: the referral and the enrolment are one transaction
    missing = await client.get("/v1/members/ben", headers=program.headers)
    assert missing.json()["code"] == "member_not_found"


async def test_self_referral_is_refused(client, program):
    ana_code = await member_with_code(
        client, program, "ana", email="Ana.Lima@example.com", phone="+33 6 12 34 56 78"
    )
    own = await enrol(client, program, "ana", referral_code=ana_code)
    assert (own.status_code, own.json()["code"]) == (422, "self_referral")
    same_email = await enrol(
        client, program, "ana2", email=" ana.lima+promo@EXAMPLE.com", referral_code=ana_code
    )
    assert (same_email.status_code, same_email.json()["code"]) == (422, "self_referral_email")
    same_phone = await enrol(client, program, "ana3", phone="0033612345678", referral_code=ana_code)
    assert (same_phone.status_code, same_phone.json()["code"]) == (422, "self_referral_phone")
    # contact details given as attributes count the same
    via_attributes = await enrol(
        client,
        program,
        "ana4",
        attributes={"email": "ANA.LIMA@example.com"},
        referral_code=ana_code,
    )
    assert via_attributes.json()["code"] == "self_referral_email"
    for refused in ("ana2", "ana3", "ana4"):
        gone = await client.get(f"/v1/members/{refused}", headers=program.headers)
        assert gone.status_code == 404
    # a different person is fine; the contact details are kept as attributes
    ben = await enrol(
        client, program, "ben", email="ben@example.com", phone="+33 7 00 00 00 01",
        referral_code=ana_code,
    )  # fmt: skip
    assert ben.status_code == 201, ben.text
    assert ben.json()["attributes"] == {"email": "ben@example.com", "phone": "+33 7 00 00 00 01"}


async def test_a_member_has_one_referrer_and_only_new_members_can_be_referred(client, program):
    ana_code = await member_with_code(client, program, "ana")
    cleo_code = await member_with_code(client, program, "cleo")
    assert (await enrol(client, program, "ben", referral_code=ana_code)).status_code == 201
    second = await enrol(client, program, "ben", referral_code=cleo_code)
    assert (second.status_code, second.json()["code"]) == (422, "already_referred")
    late = await enrol(client, program, "dan")
    assert late.status_code == 201
    too_late = await enrol(client, program, "dan", referral_code=ana_code)
    assert (too_late.status_code, too_late.json()["code"]) == (422, "already_enrolled")
    assert [r["referee"] for r in await referrals_of(client, program, "ana")] == ["ben"]
    assert await referrals_of(client, program, "cleo") == []


async def test_invalid_contact_details_are_a_validation_error(client, program):
    for body in ({"email": "not-an-address"}, {"phone": "12"}, {"referral_code": ""}):
        response = await enrol(client, program, "ben", **body)
        assert (response.status_code, response.json()["code"]) == (422, "validation_error")


# The bonus ------------------------------------------------------------------------------------


async def test_the_first_qualifying_order_rewards_both_in_one_referral_transaction(
    client, program, app, sql
):
    await with_referrals(app, sql, program)
    ana_code = await member_with_code(client, program, "ana")
    await enrol(client, program, "ben", referral_code=ana_code)
    # EUR 15.00 is below the minimum: nothing yet
    await order(client, program, "ben", "o-small", 1500)
    assert await referral_transactions(sql, program) == []
    assert (await referrals_of(client, program, "ana"))[0]["status"] == "pending"
    # EUR 35.00 qualifies
    await order(client, program, "ben", "o-1", 3500)
    [bonus] = await referral_transactions(sql, program)
    assert (bonus["order_id"], bonus["reason"]) == ("o-1", "referral bonus")
    assert orjson.loads(bonus["metadata"]) | {"referral_id": 0} == {
        "referral_id": 0,
        "referrer": "ana",
        "referee": "ben",
        "referrer_points": 500,
        "referee_points": 250,
        "order_amount": 3500,
    }
    assert await legs(sql, bonus["id"]) == sorted(
        [("ana", "available", 500), ("ben", "available", 250), ("program", "issuance", -750)]
    )
    assert await available(client, program, "ana") == 500
    assert await available(client, program, "ben") == 15 + 35 + 250
    [made] = await referrals_of(client, program, "ana")
    assert (made["status"], made["order_id"], made["reward_transaction_id"]) == (
        "rewarded",
        "o-1",
        bonus["id"],
    )
    # a second order rewards nothing more
    await order(client, program, "ben", "o-2", 5000)
    assert len(await referral_transactions(sql, program)) == 1
    assert await available(client, program, "ana") == 500


async def test_without_a_referral_policy_nothing_is_rewarded(client, program):
    ana_code = await member_with_code(client, program, "ana")
    await enrol(client, program, "ben", referral_code=ana_code)
    await order(client, program, "ben", "o-1", 5000)
    assert await available(client, program, "ana") == 0
    assert (await referrals_of(client, program, "ana"))[0]["status"] == "pending"


async def test_the_monthly_cap_counts_rewards_in_the_month_of_the_order(client, database, app, sql):
    program = await make_program(database, max_backdate_days=90)
    await with_referrals(app, sql, program, monthly_cap=1)
    ana_code = await member_with_code(client, program, "ana")
    for friend in ("ben", "cleo", "dan"):
        await enrol(client, program, friend, referral_code=ana_code)
    last_month = days_ago(40)  # always another calendar month than today
    await order(client, program, "ben", "b-1", 3000, occurred_at=last_month)
    await order(client, program, "cleo", "c-1", 3000, occurred_at=last_month)
    status = {r["referee"]: r["status"] for r in await referrals_of(client, program, "ana")}
    assert status == {"ben": "rewarded", "cleo": "cap_reached", "dan": "pending"}
    # this month has room for one: Cleo's next order takes it, Dan's finds the cap
    await order(client, program, "cleo", "c-2", 3000)
    await order(client, program, "dan", "d-1", 3000)
    status = {r["referee"]: r["status"] for r in await referrals_of(client, program, "ana")}
    assert status == {"ben": "rewarded", "cleo": "rewarded", "dan": "cap_reached"}
    assert await available(client, program, "ana") == 1000
    assert await available(client, program, "dan") == 30


# Clawback -------------------------------------------------------------------------------------


async def rewarded_pair(client, program, app, sql, **policy: Any) -> None:
    """Ana referred Ben; Ben's EUR 35.00 order o-1 earned both their bonus."""
    await with_referrals(app, sql, program, **policy)
    ana_code = await member_with_code(client, program, "ana")
    await enrol(client, program, "ben", referral_code=ana_code)
    await order(client, program, "ben", "o-1", 3500)
    assert await available(client, program, "ana") == 500


async def test_a_refund_within_the_window_claws_back_both_bonuses(client, program, app, sql):
    await rewarded_pair(client, program, app, sql)
    # Ana spent 400 of her 500 already: under cap_at_zero, 100 are taken, 400 written off
    assert (await redeem(client, program, "ana", 400)).status_code == 201
    # EUR 10.00 back leaves EUR 25.00: still qualifies
    partial = await refund(client, program, "o-1", 1000)
    assert partial.status_code == 201, partial.text
    assert len(await referral_transactions(sql, program)) == 1
    # another EUR 10.00 leaves EUR 15.00, below the minimum, inside the window
    key = new_key()
    response = await refund(client, program, "o-1", 1000, key=key)
    assert response.status_code == 201, response.text
    bonus, clawback = await referral_transactions(sql, program)
    assert (clawback["order_id"], clawback["reason"]) == ("o-1", "referral clawed back")
    meta = orjson.loads(clawback["metadata"])
    assert meta["reward_transaction_id"] == bonus["id"]
    assert (meta["referrer_points_taken_back"], meta["referrer_points_written_off"]) == (100, 400)
    assert (meta["referee_points_taken_back"], meta["referee_points_written_off"]) == (250, 0)
    assert await legs(sql, clawback["id"]) == sorted(
        [("ana", "available", -100), ("ben", "available", -250), ("program", "issuance", 350)]
    )
    assert await available(client, program, "ana") == 0
    # Ben: 35 earned, 20 taken back by the refunds, his 250 bonus clawed back
    assert await available(client, program, "ben") == 15
    assert response.json()["balance"]["available"] == 15  # the response says so too
    [made] = await referrals_of(client, program, "ana")
    assert (made["status"], made["clawback_transaction_id"]) == ("clawed_back", clawback["id"])
    # replaying the refund claws back nothing twice; nor does a further refund
    replay = await refund(client, program, "o-1", 1000, key=key)
    assert replay.headers.get("Idempotent-Replayed") == "true"
    assert replay.json() == response.json()
    assert (await refund(client, program, "o-1", 1500)).status_code == 201
    assert len(await referral_transactions(sql, program)) == 2


async def test_under_allow_negative_the_clawback_puts_the_rest_in_debt(client, database, app, sql):
    program = await make_program(database, return_policy="allow_negative")
    await rewarded_pair(client, program, app, sql)
    assert (await redeem(client, program, "ana", 400)).status_code == 201
    cancelled = await client.post("/v1/orders/o-1/cancel", headers=program.write_headers())
    assert cancelled.status_code == 201, cancelled.text
    _, clawback = await referral_transactions(sql, program)
    assert await legs(sql, clawback["id"]) == sorted(
        [
            ("ana", "available", -100),
            ("ana", "debt", -400),
            ("ben", "available", -250),
            ("program", "issuance", 750),
        ]
    )
    meta = orjson.loads(clawback["metadata"])
    assert (meta["referrer_points_taken_back"], meta["referrer_points_written_off"]) == (500, 0)
    assert await available(client, program, "ana") == -400
    # Ana's next points repay her debt first
    await order(client, program, "ana", "a-1", 50_000)
    assert await available(client, program, "ana") == 100


async def test_a_refund_after_the_window_keeps_the_bonus(client, database, app, sql):
    program = await make_program(database)
    await with_referrals(app, sql, program)
    ana_code = await member_with_code(client, program, "ana")
    await enrol(client, program, "ben", referral_code=ana_code)
    await order(client, program, "ben", "o-1", 3500, occurred_at=days_ago(20))
    assert await available(client, program, "ana") == 500
    response = await refund(client, program, "o-1", 3500)
    assert response.status_code == 201, response.text
    assert len(await referral_transactions(sql, program)) == 1
    assert await available(client, program, "ana") == 500
    assert await available(client, program, "ben") == 250
    assert (await referrals_of(client, program, "ana"))[0]["status"] == "rewarded"


# Concurrency ----------------------------------------------------------------------------------


async def test_ten_concurrent_orders_of_the_referee_reward_once(client, program, app, sql):
    await with_referrals(app, sql, program)
    ana_code = await member_with_code(client, program, "ana")
    await enrol(client, program, "ben", referral_code=ana_code)
    await asyncio.gather(
        *(order(client, program, "ben", f"o-{i}", 3000) for i in range(10))
    )  # fmt: skip
    [bonus] = await referral_transactions(sql, program)
    assert await available(client, program, "ana") == 500
    assert await available(client, program, "ben") == 10 * 30 + 250
    assert (await referrals_of(client, program, "ana"))[0]["reward_transaction_id"] == bonus["id"]


async def test_referees_of_one_referrer_ordering_at_once_respect_the_cap(client, program, app, sql):
    await with_referrals(app, sql, program, monthly_cap=3)
    ana_code = await member_with_code(client, program, "ana")
    friends = [f"friend-{i}" for i in range(5)]
    for friend in friends:
        await enrol(client, program, friend, referral_code=ana_code)
    # each friend orders twice at once, and Ana earns meanwhile
    await asyncio.gather(
        *(order(client, program, f, f"{f}-{n}", 2500) for f in friends for n in (1, 2)),
        order(client, program, "ana", "ana-1", 1000),
    )  # fmt: skip
    statuses = sorted(r["status"] for r in await referrals_of(client, program, "ana"))
    assert statuses == ["cap_reached"] * 2 + ["rewarded"] * 3
    assert len(await referral_transactions(sql, program)) == 3
    assert await available(client, program, "ana") == 3 * 500 + 10


async def test_rewards_transfers_and_refunds_between_referrer_and_referees_never_deadlock(
    client, database, database_url, app, sql
):
    """The reward locks the referrer's account rows while holding the referee's advisory lock;
    transfers between the two (both advisory locks, in id order) and refunds with clawbacks
    run at the same time, and every request must succeed."""
    program = await make_program(database, member_transfers=True)
    await with_referrals(app, sql, program, monthly_cap=4, return_window_days=60)
    ana_code = await member_with_code(client, program, "ana")
    friends = [f"friend-{i}" for i in range(8)]
    for friend in friends:
        await enrol(client, program, friend, referral_code=ana_code)
    for member in ("ana", *friends):  # points of their own to transfer
        await client.post(
            "/v1/earn", json={"member": member, "points": 10}, headers=program.write_headers()
        )
    for friend in friends[:4]:  # four already rewarded, whose orders are refunded below
        await order(client, program, friend, f"{friend}-0", 3000)
    await sql.execute(  # the cap is for the month: these four were rewarded last month
        "UPDATE referrals SET order_occurred_at = order_occurred_at - interval '40 days'"
        " WHERE program_id = $1",
        program.id,
    )

    async def transfer(source: str, target: str) -> None:
        response = await client.post(
            "/v1/transfers",
            json={"from_member": source, "to_member": target, "points": 1},
            headers=program.write_headers(),
        )
        assert response.status_code == 201, response.text

    async def refunded(order_id: str) -> None:
        response = await refund(client, program, order_id, 3000)
        assert response.status_code == 201, response.text

    await asyncio.gather(
        *(order(client, program, f, f"{f}-{n}", 2500) for f in friends[4:] for n in (1, 2)),
        *(transfer("ana", f) for f in friends),
        *(transfer(f, "ana") for f in friends[:4]),
        *(refunded(f"{f}-0") for f in friends[:4]),
    )
    statuses = {r["referee"]: r["status"] for r in await referrals_of(client, program, "ana")}
    assert sorted(statuses.values()) == ["clawed_back"] * 4 + ["rewarded"] * 4
    assert len(await referral_transactions(sql, program)) == 4 + 4 + 4
    problems = await sql.fetchval(
        "SELECT count(*) FROM accounts WHERE program_id = $1 AND balance < 0 AND kind <> 'debt'",
        program.id,
    )
    assert problems == 0
    verified = await run_cli(database_url, "verify")  # balances, lots, append-only...
    assert verified.returncode == 0, verified.stdout
