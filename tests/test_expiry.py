"""Expiry against PostgreSQL: lots, FIFO spending, lazy and worker expiry, `GET .../expiring`.

Every credit of a member's available points is a lot dated by the program's policy
(`app.domain.expiry.lot_expires_at`, in Python only; here it is checked against an independent
oracle on PostgreSQL's calendar, `tests/oracles/lot_expires_at.sql`); spending takes the
lots that expire first; due lots lapse in one `expire` posting each (member available ->
program breakage), lazily before any read or write of the member, or by the worker -- exactly
once either way. Policies are set with SQL (the program cache is cleared after).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from pydantic import TypeAdapter

from app.db import Database
from app.domain.dates import add_months, zone
from app.domain.expiry import ExpiryPolicy, inactivity_expires_at, lot_expires_at
from app.ledger.verify import CHECKS
from app.worker import jobs
from tests import support
from tests.conftest import make_program
from tests.support import available, earn, libpq_url, redeem, run_cli

POLICY = TypeAdapter(ExpiryPolicy)
NOW_SLACK = timedelta(minutes=5)


# --------------------------------------------------------------------------------- helpers


async def set_policy(
    app: Any, sql: asyncpg.Connection, program: Any, policy: dict[str, Any], tz: str = "UTC"
) -> None:
    await sql.execute(
        "UPDATE programs SET expiry_policy = $2::jsonb, timezone = $3 WHERE id = $1",
        program.id,
        json.dumps(policy),
        tz,
    )
    app.state.auth_caches.programs.clear()


async def expiring_program(
    app: Any, database: Database, sql: asyncpg.Connection, policy: dict[str, Any], tz: str = "UTC"
) -> Any:
    program = await make_program(database, max_backdate_days=3650)
    await set_policy(app, sql, program, policy, tz)
    return program


async def member_id(sql: asyncpg.Connection, program: Any, external_id: str) -> int:
    found: int = await sql.fetchval(
        "SELECT id FROM members WHERE program_id = $1 AND external_id = $2", program.id, external_id
    )
    return found


async def lots_of(sql: asyncpg.Connection, program: Any, external_id: str) -> list[asyncpg.Record]:
    return await sql.fetch(
        "SELECT l.* FROM lots l JOIN members m ON m.id = l.member_id"
        " WHERE m.program_id = $1 AND m.external_id = $2 ORDER BY l.id",
        program.id,
        external_id,
    )


async def movements_of(sql: asyncpg.Connection, transaction_id: int) -> list[tuple[int, int]]:
    rows = await sql.fetch(
        "SELECT lot_id, points FROM lot_movements WHERE transaction_id = $1 ORDER BY lot_id",
        transaction_id,
    )
    return [(r["lot_id"], r["points"]) for r in rows]


async def expires(sql: asyncpg.Connection, program: Any) -> list[asyncpg.Record]:
    return await sql.fetch(
        "SELECT t.*, (SELECT -sum(e.amount) FROM entries e JOIN accounts a ON a.id = e.account_id"
        "              WHERE e.transaction_id = t.id AND a.kind = 'available') AS points"
        "  FROM transactions t WHERE t.program_id = $1 AND t.kind = 'expire' ORDER BY t.id",
        program.id,
    )


async def breakage(sql: asyncpg.Connection, program: Any) -> int:
    total: int = await sql.fetchval(
        "SELECT coalesce(sum(e.amount), 0) FROM entries e JOIN accounts a ON a.id = e.account_id"
        " WHERE a.program_id = $1 AND a.member_id IS NULL AND a.kind = 'breakage'",
        program.id,
    )
    return total


async def earn_at(client: Any, program: Any, member: str, points: int, when: datetime) -> int:
    response = await earn(client, program, member, points, occurred_at=when.isoformat())
    assert response.status_code == 201, response.text
    transaction_id: int = response.json()["transaction_id"]
    return transaction_id


LOT_CHECKS = (
    "lots_match_available",
    "lots_match_movements",
    "lots_follow_entries",
    "lots_expire_on_time",
)


async def lot_drift(db: Any, program: Any, names: tuple[str, ...] = LOT_CHECKS) -> set[str]:
    """The lot checks of `verify` that find something about `program` (other tests' data
    is left out: tests share the database; every check names the program of what it finds)."""
    found = set()
    for check in CHECKS:
        if check.name in names:
            for row in await db.fetch(check.sql):
                if row.get("program_id") == program.id:
                    found.add(check.name)
    return found


class _RolledBack(Exception):
    """Leaves a transaction without committing it."""


async def check_ledger(database: Database, program: Any) -> None:
    """The lot checks of `verify` find nothing about `program`."""
    async with database.single() as db:
        assert await lot_drift(db, program) == set()


async def move_clock(sql: asyncpg.Connection, program: Any) -> None:
    """Make the program's lots that are not due yet due now: their expires_at becomes the
    transaction start, later than every posting so far (so no earlier spending looks late)."""
    await support.move_clock(
        sql,
        program.id,
        "UPDATE lots SET expires_at = now() WHERE program_id = $1"
        " AND (expires_at IS NULL OR expires_at > now())",
        program.id,
    )


def now() -> datetime:
    return datetime.now(UTC)


# ------------------------------------------------------------------- lots and their dates


@pytest.mark.parametrize(
    "policy",
    [
        {"kind": "lifetime", "months": 12},
        {"kind": "lifetime", "months": 12, "round_to": "month_end"},
        {"kind": "lifetime", "months": 1, "round_to": "quarter_end"},
        {"kind": "fixed_date", "month": 12, "day": 31},
        {"kind": "fixed_date", "month": 6, "day": 30, "years_after": 0},
        {"kind": "never"},
        {"kind": "inactivity", "months": 18},
    ],
    ids=lambda p: "-".join(str(v) for v in p.values()),
)
async def test_every_earn_creates_a_lot_dated_by_the_policy(app, client, database, sql, policy):
    program = await expiring_program(app, database, sql, policy, "Europe/Paris")
    parsed = POLICY.validate_python(policy)
    # a Paris evening: the local date is a day after the UTC date
    earned_at = datetime.combine(now().date() - timedelta(days=40), time(23, 30), tzinfo=UTC)
    first = await earn_at(client, program, "ann", 120, earned_at)
    order = await client.post(
        "/v1/earn",
        json={"member": "ann", "order": {"id": "o-1", "amount": 4_250, "currency": "EUR"}},
        headers=program.write_headers(),
    )
    assert order.status_code == 201, order.text
    adjust = await client.post(
        "/v1/adjustments",
        json={"member": "ann", "points": 5, "reason": "goodwill"},
        headers=program.write_headers(),
    )
    assert adjust.status_code == 201, adjust.text

    lots = await lots_of(sql, program, "ann")
    assert [(lot["transaction_id"], lot["points"], lot["remaining"]) for lot in lots] == [
        (first, 120, 120),
        (order.json()["transaction_id"], 42, 42),
        (adjust.json()["transaction_id"], 5, 5),
    ]
    assert lots[0]["earned_at"] == earned_at
    for lot in lots:
        assert lot["expires_at"] == lot_expires_at(parsed, lot["earned_at"], "Europe/Paris")
    if policy["kind"] in ("never", "inactivity"):
        assert lots[0]["expires_at"] is None


async def test_lot_dates_worked_examples(sql):
    """The worked examples of app.domain.expiry, computed by Python and by the SQL oracle."""
    await install_oracle(sql)
    examples = [
        # Paris, 12 months: earned 15 March 2025 10:00 CET, valid through 15 March 2026
        (
            {"kind": "lifetime", "months": 12},
            "Europe/Paris",
            "2025-03-15T09:00:00Z",
            "2026-03-15T23:00:00Z",
        ),
        # summer: valid through 1 July 2026, lapses at midnight CEST
        (
            {"kind": "lifetime", "months": 12},
            "Europe/Paris",
            "2025-07-01T08:00:00Z",
            "2026-07-01T22:00:00Z",
        ),
        # 29 February + 12 months = 28 February
        ({"kind": "lifetime", "months": 12}, "UTC", "2024-02-29T12:00:00Z", "2025-03-01T00:00:00Z"),
        # 31 January + 1 month, leap year: 29 February
        ({"kind": "lifetime", "months": 1}, "UTC", "2024-01-31T12:00:00Z", "2024-03-01T00:00:00Z"),
        (
            {"kind": "lifetime", "months": 12, "round_to": "month_end"},
            "UTC",
            "2025-03-15T12:00:00Z",
            "2026-04-01T00:00:00Z",
        ),
        (
            {"kind": "lifetime", "months": 1, "round_to": "quarter_end"},
            "UTC",
            "2025-02-15T12:00:00Z",
            "2025-04-01T00:00:00Z",
        ),
        # fixed 31 Dec: earned on 31 Dec 2025 counts in 2025 -> through 31 Dec 2026
        (
            {"kind": "fixed_date", "month": 12, "day": 31},
            "UTC",
            "2025-12-31T12:00:00Z",
            "2027-01-01T00:00:00Z",
        ),
        (
            {"kind": "fixed_date", "month": 12, "day": 31, "years_after": 0},
            "UTC",
            "2025-12-30T12:00:00Z",
            "2026-01-01T00:00:00Z",
        ),
        # 23:30Z on 31 Dec is already 2026 in Paris
        (
            {"kind": "fixed_date", "month": 12, "day": 31, "years_after": 0},
            "Europe/Paris",
            "2025-12-31T23:30:00Z",
            "2026-12-31T23:00:00Z",
        ),
    ]
    for policy, tz, earned, expected in examples:
        got = await sql.fetchval(
            "SELECT pg_temp.lot_expires_at($1::jsonb, $2, $3)",
            json.dumps(policy),
            tz,
            datetime.fromisoformat(earned),
        )
        assert got == datetime.fromisoformat(expected), (policy, tz, earned)
        assert (
            lot_expires_at(POLICY.validate_python(policy), datetime.fromisoformat(earned), tz)
            == got
        )
    for policy in ({"kind": "never"}, {"kind": "inactivity", "months": 3}):
        assert (
            await sql.fetchval(
                "SELECT pg_temp.lot_expires_at($1::jsonb, 'UTC', now())", json.dumps(policy)
            )
            is None
        )


# ------------------------------------- Python lot_expires_at == the SQL oracle's lot_expires_at

ORACLE = Path(__file__).parent / "oracles" / "lot_expires_at.sql"


async def install_oracle(conn: asyncpg.Connection) -> None:
    """The independent implementation, in this session's pg_temp schema (gone at disconnect)."""
    await conn.execute(ORACLE.read_text())


ZONES = [
    "UTC",
    "Europe/Paris",
    "Europe/London",
    "America/New_York",
    "America/Santiago",  # DST changes at midnight: missing local midnights
    "America/Sao_Paulo",
    "America/Asuncion",
    "Asia/Tehran",
    "Asia/Kolkata",
    "Australia/Lord_Howe",  # 30-minute DST
    "Pacific/Chatham",
    "Pacific/Apia",  # skipped 30 December 2011
    "Pacific/Kiritimati",  # UTC+14
    "Pacific/Pago_Pago",  # UTC-11
    "Africa/Casablanca",
]


def _policies() -> st.SearchStrategy[dict[str, Any]]:
    lifetime = st.builds(
        lambda months, round_to: {"kind": "lifetime", "months": months, "round_to": round_to},
        st.integers(1, 120) | st.sampled_from([1, 3, 6, 12, 18, 24, 36]),
        st.sampled_from(["none", "month_end", "quarter_end"]),
    )
    fixed = st.builds(
        lambda day, years: {
            "kind": "fixed_date",
            "month": day.month,
            "day": day.day,
            "years_after": years,
        },
        st.dates(date(2001, 1, 1), date(2001, 12, 31)),
        st.integers(0, 5),
    )
    other = st.sampled_from([{"kind": "never"}, {"kind": "inactivity", "months": 6}])
    return lifetime | fixed | other


def _dst_days(tz: str, first_year: int, last_year: int) -> list[date]:
    """Local days on which `tz` changes its UTC offset."""
    found = []
    day = date(first_year, 1, 1)
    info = zone(tz)
    while day.year <= last_year:
        start = datetime.combine(day, time(0), tzinfo=info).astimezone(UTC)
        end = datetime.combine(day + timedelta(days=1), time(0), tzinfo=info).astimezone(UTC)
        if end - start != timedelta(days=1):
            found.append(day)
        day += timedelta(days=1)
    return found


def _sql_expiry(
    conn: asyncpg.Connection,
    loop: asyncio.AbstractEventLoop,
    cases: list[tuple[dict[str, Any], str, datetime]],
) -> list[datetime | None]:
    rows = loop.run_until_complete(
        conn.fetch(
            "SELECT pg_temp.lot_expires_at(p::jsonb, z, t) AS at"
            "  FROM unnest($1::text[], $2::text[], $3::timestamptz[]) WITH ORDINALITY"
            "       AS c (p, z, t, n) ORDER BY n",
            [json.dumps(p) for p, _, _ in cases],
            [z for _, z, _ in cases],
            [t for _, _, t in cases],
        )
    )
    return [r["at"] for r in rows]


def _clocks_disagree(
    conn: asyncpg.Connection,
    loop: asyncio.AbstractEventLoop,
    cases: list[tuple[dict[str, Any], str, datetime]],
    expected: list[datetime | None],
) -> set[int]:
    """Cases in which PostgreSQL's time zone database and Python's (tzdata) disagree about the
    local time, at the earn or at the expected expiry. Both follow the IANA database, but in
    different releases: a zone whose future rules changed (Morocco's Ramadan DST, Paraguay's
    2024 switch) is predicted differently, and no expiry logic can agree there."""
    instants = [
        (i, tz, at)
        for i, ((_, tz, earned), at) in enumerate(zip(cases, expected, strict=True))
        for at in (earned, at)
        if at is not None
    ]
    rows = loop.run_until_complete(
        conn.fetch(
            "SELECT (t AT TIME ZONE z) AS local FROM unnest($1::text[], $2::timestamptz[])"
            " WITH ORDINALITY AS c (z, t, n) ORDER BY n",
            [tz for _, tz, _ in instants],
            [at for _, _, at in instants],
        )
    )
    return {
        i
        for (i, tz, at), row in zip(instants, rows, strict=True)
        if at.astimezone(zone(tz)).replace(tzinfo=None) != row["local"]
    }


def _python_expiry(case: tuple[dict[str, Any], str, datetime]) -> datetime | None:
    policy, tz, earned_at = case
    return lot_expires_at(POLICY.validate_python(policy), earned_at, tz)


@pytest.fixture
def sync_sql(database_url: str) -> Any:
    """A plain asyncpg connection driven from synchronous code (hypothesis tests)."""
    loop = asyncio.new_event_loop()
    conn = loop.run_until_complete(asyncpg.connect(libpq_url(database_url)))
    loop.run_until_complete(install_oracle(conn))
    try:
        yield conn, loop
    finally:
        loop.run_until_complete(conn.close())
        loop.close()


@settings(
    max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    policy=_policies(),
    tz=st.sampled_from(ZONES),
    earned_at=st.datetimes(
        min_value=datetime(1990, 1, 1), max_value=datetime(2060, 12, 31), timezones=st.just(UTC)
    ),
)
def test_lot_expires_at_matches_the_sql_oracle(sync_sql, policy, tz, earned_at):
    conn, loop = sync_sql
    case = (policy, tz, earned_at)
    expected = _python_expiry(case)
    assume(not _clocks_disagree(conn, loop, [case], [expected]))  # see _clocks_disagree
    assert _sql_expiry(conn, loop, [case]) == [expected], case


def test_lot_expires_at_matches_the_sql_oracle_on_dst_and_month_ends(sync_sql):
    """Systematically: lots earned around every DST change of 2020-2030 and on every month
    end, and lots whose expiry day lands on a DST change, in every zone above."""
    conn, loop = sync_sql
    policies: list[dict[str, Any]] = [
        {"kind": "lifetime", "months": 1},
        {"kind": "lifetime", "months": 12},
        {"kind": "lifetime", "months": 13, "round_to": "month_end"},
        {"kind": "lifetime", "months": 2, "round_to": "quarter_end"},
    ]
    cases: list[tuple[dict[str, Any], str, datetime]] = []
    for tz in ZONES:
        info = zone(tz)
        for day in _dst_days(tz, 2020, 2030):
            fixed = {"kind": "fixed_date", "month": day.month, "day": day.day, "years_after": 1}
            if (day.month, day.day) == (2, 29):
                fixed["day"] = 28
            for minutes in (-61, -1, 0, 1, 61, 12 * 60, 23 * 60 + 59):
                moment = datetime.combine(day, time(0), tzinfo=info) + timedelta(minutes=minutes)
                for policy in [*policies, fixed]:
                    cases.append((policy, tz, moment.astimezone(UTC)))
            # earned so that the expiry day (the day after the last valid day) is a DST day
            for months in (1, 6, 12):
                earned_on = add_months(day - timedelta(days=1), -months)
                noon = datetime.combine(earned_on, time(12), tzinfo=info).astimezone(UTC)
                cases.append(({"kind": "lifetime", "months": months}, tz, noon))
        for year in (2023, 2024, 2025):
            for month in range(1, 13):
                last = add_months(date(year, month, 1), 1) - timedelta(days=1)
                for day in (last, last - timedelta(days=1), date(year, month, 1)):
                    for hour in (0, 23):
                        moment = datetime.combine(day, time(hour), tzinfo=info).astimezone(UTC)
                        for policy in policies:
                            cases.append((policy, tz, moment))
    expected = [_python_expiry(case) for case in cases]
    got: list[datetime | None] = []
    for start in range(0, len(cases), 5000):
        got += _sql_expiry(conn, loop, cases[start : start + 5000])
    tzdata = _clocks_disagree(conn, loop, cases, expected)
    # the comparison must keep nearly all of its cases, whatever releases the two databases are
    assert len(tzdata) < len(cases) // 20, f"{len(tzdata)} of {len(cases)} cases lost to tzdata"
    wrong = [
        (case, e, g)
        for i, (case, e, g) in enumerate(zip(cases, expected, got, strict=True))
        if e != g and i not in tzdata
    ]
    assert not wrong, f"{len(wrong)} of {len(cases)} differ, e.g. {wrong[:5]}"


AMBIGUOUS_MIDNIGHT = "America/Havana"  # DST ends at 01:00 -> 00:00: midnight happens twice


def test_lot_expires_at_matches_the_sql_oracle_on_an_ambiguous_midnight(sync_sql):
    conn, loop = sync_sql
    cases: list[tuple[dict[str, Any], str, datetime]] = []
    for day in _dst_days(AMBIGUOUS_MIDNIGHT, 2020, 2030):
        for months in (1, 12):
            earned_on = add_months(day - timedelta(days=1), -months)
            noon = datetime.combine(earned_on, time(12), tzinfo=zone(AMBIGUOUS_MIDNIGHT))
            cases.append(({"kind": "lifetime", "months": months}, AMBIGUOUS_MIDNIGHT, noon))
    assert _sql_expiry(conn, loop, cases) == [_python_expiry(case) for case in cases]


# ------------------------------------------------------------------------------ spending


async def test_redeem_spends_the_lots_that_expire_first(app, client, database, sql):
    program = await expiring_program(app, database, sql, {"kind": "never"})
    t_never = await earn_at(client, program, "bo", 500, now() - timedelta(days=1))
    await set_policy(app, sql, program, {"kind": "lifetime", "months": 12})
    t_late = await earn_at(client, program, "bo", 100, now() - timedelta(days=30))
    t_early = await earn_at(client, program, "bo", 50, now() - timedelta(days=200))
    t_same = await earn_at(client, program, "bo", 20, now() - timedelta(days=200, hours=-1))
    lots = {lot["transaction_id"]: lot["id"] for lot in await lots_of(sql, program, "bo")}

    spent = await redeem(client, program, "bo", 120)
    assert spent.status_code == 201, spent.text
    # 50 (expires first, earned first), then the 20 of the same day, then 50 of the next
    assert await movements_of(sql, spent.json()["transaction_id"]) == sorted(
        [(lots[t_early], -50), (lots[t_same], -20), (lots[t_late], -50)]
    )
    spent = await redeem(client, program, "bo", 80)
    assert await movements_of(sql, spent.json()["transaction_id"]) == sorted(
        [(lots[t_late], -50), (lots[t_never], -30)]
    )
    remaining = {
        lot["transaction_id"]: lot["remaining"] for lot in await lots_of(sql, program, "bo")
    }
    assert remaining == {t_never: 470, t_late: 0, t_early: 0, t_same: 0}
    assert await available(client, program, "bo") == 470
    await check_ledger(database, program)


async def test_a_hold_takes_lots_and_its_release_gives_them_back(app, client, database, sql):
    program = await expiring_program(app, database, sql, {"kind": "lifetime", "months": 6})
    t_old = await earn_at(client, program, "cy", 60, now() - timedelta(days=100))
    t_new = await earn_at(client, program, "cy", 60, now() - timedelta(days=10))
    lots = {lot["transaction_id"]: lot["id"] for lot in await lots_of(sql, program, "cy")}

    hold = await client.post(
        "/v1/holds", json={"member": "cy", "points": 90}, headers=program.write_headers()
    )
    assert hold.status_code == 201, hold.text
    hold_txn = await sql.fetchval(
        "SELECT id FROM transactions WHERE hold_id = $1 AND kind = 'hold'", hold.json()["hold_id"]
    )
    assert await movements_of(sql, hold_txn) == sorted([(lots[t_old], -60), (lots[t_new], -30)])

    released = await client.post(
        f"/v1/holds/{hold.json()['hold_id']}/release", headers=program.write_headers()
    )
    assert released.status_code == 200, released.text
    release_txn = await sql.fetchval(
        "SELECT id FROM transactions WHERE hold_id = $1 AND kind = 'release'",
        hold.json()["hold_id"],
    )
    assert await movements_of(sql, release_txn) == sorted([(lots[t_old], 60), (lots[t_new], 30)])
    assert [lot["remaining"] for lot in await lots_of(sql, program, "cy")] == [60, 60]

    # a partial capture spends the soonest-expiring points; the rest goes back
    hold = await client.post(
        "/v1/holds", json={"member": "cy", "points": 90}, headers=program.write_headers()
    )
    captured = await client.post(
        f"/v1/holds/{hold.json()['hold_id']}/capture",
        json={"points": 70},
        headers=program.write_headers(),
    )
    assert captured.status_code == 200, captured.text
    assert [lot["remaining"] for lot in await lots_of(sql, program, "cy")] == [0, 50]
    assert await available(client, program, "cy") == 50
    await check_ledger(database, program)


async def test_refund_takes_back_the_orders_own_lot_first(app, client, database, sql):
    program = await expiring_program(app, database, sql, {"kind": "lifetime", "months": 12})
    t_old = await earn_at(client, program, "di", 30, now() - timedelta(days=300))
    order = await client.post(
        "/v1/earn",
        json={"member": "di", "order": {"id": "r-1", "amount": 10_000, "currency": "EUR"}},
        headers=program.write_headers(),
    )
    assert order.status_code == 201, order.text
    refund = await client.post(
        "/v1/orders/r-1/refunds",
        json={"amount": 5_000, "currency": "EUR"},
        headers=program.write_headers(),
    )
    assert refund.status_code in (200, 201), refund.text
    remaining = {
        lot["transaction_id"]: lot["remaining"] for lot in await lots_of(sql, program, "di")
    }
    assert remaining == {t_old: 30, order.json()["transaction_id"]: 50}
    await check_ledger(database, program)


async def test_settled_pending_points_keep_the_earn_date(app, client, database, sql):
    program = await make_program(database, max_backdate_days=3650, pending_days=14)
    await set_policy(app, sql, program, {"kind": "lifetime", "months": 12}, "Europe/Paris")
    earned_at = now() - timedelta(days=3)
    response = await client.post(
        "/v1/earn",
        json={
            "member": "ola",
            "order": {"id": "p-1", "amount": 2_000, "currency": "EUR"},
            "occurred_at": earned_at.isoformat(),
        },
        headers=program.write_headers(),
    )
    assert response.status_code == 201, response.text
    assert await lots_of(sql, program, "ola") == []  # pending points are not a lot yet
    await support.move_clock(
        sql,
        program.id,
        "UPDATE pending_lots SET release_at = now() - interval '1 second' WHERE program_id = $1",
        program.id,
    )
    assert await available(client, program, "ola") == 20
    [lot] = await lots_of(sql, program, "ola")
    settle = await sql.fetchval(
        "SELECT id FROM transactions WHERE program_id = $1 AND kind = 'settle'", program.id
    )
    assert (lot["transaction_id"], lot["points"], lot["earned_at"]) == (settle, 20, earned_at)
    assert lot["expires_at"] == lot_expires_at(
        POLICY.validate_python({"kind": "lifetime", "months": 12}), earned_at, "Europe/Paris"
    )
    await check_ledger(database, program)


async def test_a_transfer_spends_fifo_and_gives_the_recipient_a_new_lot(app, client, database, sql):
    program = await expiring_program(app, database, sql, {"kind": "lifetime", "months": 12})
    t_old = await earn_at(client, program, "pia", 40, now() - timedelta(days=300))
    t_new = await earn_at(client, program, "pia", 40, now() - timedelta(days=3))
    enrolled = await client.post(
        "/v1/members", json={"external_id": "quo"}, headers=program.write_headers()
    )
    assert enrolled.status_code == 201, enrolled.text
    moved = await client.post(
        "/v1/transfers",
        json={"from_member": "pia", "to_member": "quo", "points": 50},
        headers=program.write_headers(),
    )
    assert moved.status_code == 201, moved.text
    transfer = moved.json()["transaction_id"]
    lots = {lot["transaction_id"]: lot for lot in await lots_of(sql, program, "pia")}
    assert await movements_of(sql, transfer) == sorted(
        [(lots[t_old]["id"], -40), (lots[t_new]["id"], -10)]
    )
    [received] = await lots_of(sql, program, "quo")
    assert (received["transaction_id"], received["points"]) == (transfer, 50)
    await check_ledger(database, program)


# ------------------------------------------------------------------------- lazy expiry


async def test_backdated_points_already_due_expire_before_they_can_be_spent(
    app, client, database, sql
):
    program = await expiring_program(app, database, sql, {"kind": "lifetime", "months": 1})
    earned_at = now() - timedelta(days=90)
    t_old = await earn_at(client, program, "ed", 100, earned_at)
    await earn_at(client, program, "ed", 30, now())

    refused = await redeem(client, program, "ed", 120)
    assert refused.status_code == 409, refused.text
    assert refused.headers["content-type"] == "application/problem+json"
    assert refused.json()["code"] == "insufficient_points"

    member = await client.get("/v1/members/ed", headers=program.headers)
    assert member.json()["balance"]["available"] == 30
    history = await client.get("/v1/members/ed/transactions", headers=program.headers)
    kinds = [(item["kind"], item["points"]) for item in history.json()["items"]]
    assert ("expire", -100) in kinds
    [expired] = await expires(sql, program)
    lot = (await lots_of(sql, program, "ed"))[0]
    # expire:<lot id> (then anything that keeps a lot's later expiries apart)
    assert expired["idempotency_key"].split(":")[:2] == ["expire", str(lot["id"])]
    assert (
        expired["occurred_at"]
        == lot["expires_at"]
        == lot_expires_at(
            POLICY.validate_python({"kind": "lifetime", "months": 1}), earned_at, "UTC"
        )
    )
    assert json.loads(expired["metadata"])["lot_id"] == lot["id"]
    assert lot["transaction_id"] == t_old and lot["remaining"] == 0
    assert await breakage(sql, program) == 100

    assert (await redeem(client, program, "ed", 30)).status_code == 201
    assert len(await expires(sql, program)) == 1
    await check_ledger(database, program)


async def test_points_already_spent_never_expire(app, client, database, sql):
    program = await expiring_program(app, database, sql, {"kind": "lifetime", "months": 2})
    await earn_at(client, program, "fay", 300, now() - timedelta(days=20))
    assert (await redeem(client, program, "fay", 220)).status_code == 201
    await move_clock(sql, program)
    assert await available(client, program, "fay") == 0
    [expired] = await expires(sql, program)
    assert expired["points"] == 80
    assert await breakage(sql, program) == 80
    [lot] = await lots_of(sql, program, "fay")
    assert (lot["points"], lot["remaining"]) == (300, 0)
    # a fully spent lot expires nothing
    await earn_at(client, program, "fay", 40, now())
    assert (await redeem(client, program, "fay", 40)).status_code == 201
    await move_clock(sql, program)
    assert await available(client, program, "fay") == 0
    assert len(await expires(sql, program)) == 1
    await check_ledger(database, program)


async def test_a_hold_released_after_its_lot_expired_gives_back_points_that_expire(
    app, client, database, sql
):
    """A hold took points of a lot that expired while held; released, they are due at once and
    expire (a second expire posting for the same lot), never spendable."""
    program = await expiring_program(app, database, sql, {"kind": "lifetime", "months": 2})
    await earn_at(client, program, "gil", 100, now() - timedelta(days=20))
    hold = await client.post(
        "/v1/holds",
        json={"member": "gil", "points": 60, "expires_in": 3600},
        headers=program.write_headers(),
    )
    assert hold.status_code == 201, hold.text
    await move_clock(sql, program)
    assert await available(client, program, "gil") == 0  # the 40 not held expired
    released = await client.post(
        f"/v1/holds/{hold.json()['hold_id']}/release", headers=program.write_headers()
    )
    assert released.status_code == 200, released.text
    member = await client.get("/v1/members/gil", headers=program.headers)
    assert member.status_code == 200, member.text
    assert member.json()["balance"]["available"] == 0
    assert [e["points"] for e in await expires(sql, program)] == [40, 60]
    assert await breakage(sql, program) == 100
    await check_ledger(database, program)


async def test_a_reversed_redemption_gives_back_points_that_already_expired(
    app, client, database, sql
):
    program = await expiring_program(app, database, sql, {"kind": "lifetime", "months": 2})
    await earn_at(client, program, "hal", 100, now() - timedelta(days=20))
    spent = await redeem(client, program, "hal", 70)
    assert spent.status_code == 201
    await move_clock(sql, program)
    assert await available(client, program, "hal") == 0
    reversed_ = await client.post(
        f"/v1/transactions/{spent.json()['transaction_id']}/reverse",
        json={"reason": "order voided"},
        headers=program.write_headers(),
    )
    assert reversed_.status_code == 201, reversed_.text
    member = await client.get("/v1/members/hal", headers=program.headers)
    assert member.status_code == 200, member.text
    assert member.json()["balance"]["available"] == 0
    assert [e["points"] for e in await expires(sql, program)] == [30, 70]
    await check_ledger(database, program)


# --------------------------------------------------------------------------- inactivity


async def test_inactivity_expires_everything_after_n_months_without_activity(
    app, client, database, sql
):
    policy = {"kind": "inactivity", "months": 6}
    program = await expiring_program(app, database, sql, policy, "Europe/Paris")
    last = now() - timedelta(days=200)
    await earn_at(client, program, "ida", 100, last - timedelta(days=3))
    # the next read finds the deadline passed: everything lapses
    assert await available(client, program, "ida") == 0
    assert await breakage(sql, program) == 100
    [expired] = await expires(sql, program)
    assert expired["points"] == 100
    deadline = inactivity_expires_at(
        POLICY.validate_python(policy), last - timedelta(days=3), "Europe/Paris"
    )
    assert expired["occurred_at"] == deadline
    assert json.loads(expired["metadata"])["inactive"] is True

    # activity keeps the points: an earn moves the deadline
    await earn_at(client, program, "jo", 100, now() - timedelta(days=200))
    assert (await earn(client, program, "jo", 10)).status_code == 201
    # jo's first earn expired before the second (lazy maintenance runs first)
    assert await available(client, program, "jo") == 10

    await earn_at(client, program, "kim", 50, now() - timedelta(days=150))
    assert await available(client, program, "kim") == 50
    listed = await client.get("/v1/members/kim/expiring?within=60d", headers=program.headers)
    assert listed.status_code == 200, listed.text
    body = listed.json()
    kim_deadline = inactivity_expires_at(
        POLICY.validate_python(policy), now() - timedelta(days=150), "Europe/Paris"
    )
    assert body["policy"] == "inactivity"
    assert datetime.fromisoformat(body["inactivity_deadline"]) == kim_deadline
    assert body["expiring"] == [{"expires_at": body["inactivity_deadline"], "points": 50}]
    assert body["total"] == 50
    none_soon = await client.get("/v1/members/kim/expiring?within=10d", headers=program.headers)
    assert none_soon.json()["expiring"] == [] and none_soon.json()["total"] == 0
    await check_ledger(database, program)


async def test_inactivity_credit_after_the_deadline_does_not_break_the_member(
    app, client, database, sql
):
    """After an inactivity expiry, more points arrive without activity (an adjustment): the
    member must stay readable and writable, and the worker must not fail on it."""
    program = await expiring_program(app, database, sql, {"kind": "inactivity", "months": 3})
    await earn_at(client, program, "lu", 100, now() - timedelta(days=150))
    assert await available(client, program, "lu") == 0
    lu = await member_id(sql, program, "lu")
    for points in (7, 9):
        adjust = await client.post(
            "/v1/adjustments",
            json={"member": "lu", "points": points, "reason": "goodwill"},
            headers=program.write_headers(),
        )
        assert adjust.status_code == 201, adjust.text
        # a posting's lock maintains the member first (due again: points after the deadline)
        await sql.fetch(
            "SELECT * FROM ledger_lock_members($1, ARRAY[$2]::bigint[])", program.id, lu
        )
        member = await client.get("/v1/members/lu", headers=program.headers)
        assert member.status_code == 200, member.text
    await check_ledger(database, program)


# ------------------------------------------------------------------------------ worker


async def _two_workers(database_url: str, settings: Any) -> list[jobs.PassResult]:
    first = await Database.connect(database_url, settings)
    second = await Database.connect(database_url, settings)
    try:
        return list(await asyncio.gather(jobs.run_pass(first), jobs.run_pass(second)))
    finally:
        await first.close()
        await second.close()


async def test_two_workers_expire_each_lot_exactly_once(
    app, client, database, database_url, settings, sql
):
    program = await expiring_program(app, database, sql, {"kind": "lifetime", "months": 1})
    members = [f"wx{i}" for i in range(8)]
    due: list[int] = []
    for name in members:
        due.append(await earn_at(client, program, name, 10, now() - timedelta(days=20)))
        due.append(await earn_at(client, program, name, 20, now() - timedelta(days=10)))
        await earn_at(client, program, name, 5, now())
    # two lots of each member fall due while nobody looks at the member: the worker's job
    await support.move_clock(
        sql, program.id, "UPDATE lots SET expires_at = now() WHERE transaction_id = ANY($1)", due
    )
    results = await _two_workers(database_url, settings)
    assert sum(r.postings for r in results) >= 16
    expired = await expires(sql, program)
    assert len(expired) == 16
    assert len({e["idempotency_key"] for e in expired}) == 16
    assert sum(e["points"] for e in expired) == 8 * 30
    for name in members:
        assert await available(client, program, name) == 5
    await _two_workers(database_url, settings)
    assert len(await expires(sql, program)) == 16
    await check_ledger(database, program)


async def test_worker_finds_inactive_members(app, client, database, sql):
    program = await expiring_program(app, database, sql, {"kind": "inactivity", "months": 2})
    await earn_at(client, program, "sleepy", 40, now() - timedelta(days=70))
    await earn_at(client, program, "awake", 40, now() - timedelta(days=10))
    await jobs.run_pass(database)
    [expired] = await expires(sql, program)
    assert expired["member_id"] == await member_id(sql, program, "sleepy")
    assert expired["points"] == 40
    # nothing more to do for these members: the worker does not keep listing them
    async with database.single() as db:
        listed = [row[0] for row in await db.fetch(jobs._DUE_MEMBERS, program.id, 100_000)]
    assert await member_id(sql, program, "sleepy") not in listed
    assert await member_id(sql, program, "awake") not in listed


async def test_a_crashed_worker_pass_is_redone_once(app, client, database, sql, database_url):
    program = await expiring_program(app, database, sql, {"kind": "lifetime", "months": 1})
    await earn_at(client, program, "zed", 25, now() - timedelta(days=90))
    zed = await member_id(sql, program, "zed")
    crashing = await asyncpg.connect(libpq_url(database_url))
    try:
        work = crashing.transaction()
        await work.start()
        # a worker's pass: the member claimed (its row is its lock), then maintained
        assert await crashing.fetchval(
            "SELECT id FROM members WHERE program_id = $1 AND id = $2 FOR NO KEY UPDATE",
            program.id,
            zed,
        )
        assert (
            await crashing.fetchval(
                "SELECT ledger_maintain($1, ARRAY[$2]::bigint[], true)", program.id, zed
            )
            == 1
        )
        # while the first worker holds the member, another pass skips it
        busy = await jobs.run_pass(database)
        assert busy.skipped >= 1
        assert await expires(sql, program) == []
        await work.rollback()  # the crash: nothing of the first pass remains
    finally:
        await crashing.close()
    assert await expires(sql, program) == []
    await jobs.run_pass(database)
    assert [e["points"] for e in await expires(sql, program)] == [25]
    await jobs.run_pass(database)
    assert len(await expires(sql, program)) == 1
    assert await available(client, program, "zed") == 0


# ----------------------------------------------------------------------- GET .../expiring


async def test_expiring_lists_what_expires_when(app, client, database, sql):
    policy = {"kind": "lifetime", "months": 12}
    program = await expiring_program(app, database, sql, policy, "Europe/Paris")
    parsed = POLICY.validate_python(policy)
    t1 = now() - timedelta(days=350)
    t2 = now() - timedelta(days=340)
    await earn_at(client, program, "max", 100, t1)
    await earn_at(client, program, "max", 50, t1 + timedelta(minutes=5))
    await earn_at(client, program, "max", 70, t2)
    await earn_at(client, program, "max", 40, now() - timedelta(days=10))
    await earn_at(client, program, "max", 9, now() - timedelta(days=400))  # already due

    response = await client.get("/v1/members/max/expiring?within=30d", headers=program.headers)
    assert response.status_code == 200, response.text
    body = response.json()
    e1, e2 = lot_expires_at(parsed, t1, "Europe/Paris"), lot_expires_at(parsed, t2, "Europe/Paris")
    assert e1 is not None and e2 is not None
    assert [(datetime.fromisoformat(g["expires_at"]), g["points"]) for g in body["expiring"]] == [
        (e1, 150),
        (e2, 70),
    ]
    assert body["total"] == 220
    assert body["member"] == "max" and body["policy"] == "lifetime"
    assert body["inactivity_deadline"] is None
    as_of, until = datetime.fromisoformat(body["as_of"]), datetime.fromisoformat(body["until"])
    assert until - as_of == timedelta(days=30)
    assert abs(as_of - now()) < NOW_SLACK
    # the due lot was expired first
    assert [e["points"] for e in await expires(sql, program)] == [9]

    assert (await redeem(client, program, "max", 20)).status_code == 201
    default = await client.get("/v1/members/max/expiring", headers=program.headers)
    assert [g["points"] for g in default.json()["expiring"]] == [130, 70]
    everything = await client.get("/v1/members/max/expiring?within=3650d", headers=program.headers)
    assert [g["points"] for g in everything.json()["expiring"]] == [130, 70, 40]
    assert everything.json()["total"] == 240 == await available(client, program, "max")
    nothing = await client.get("/v1/members/max/expiring?within=0d", headers=program.headers)
    assert nothing.json()["expiring"] == [] and nothing.json()["total"] == 0


async def test_expiring_under_never(client, program):
    await earn(client, program, "nia", 10)
    response = await client.get("/v1/members/nia/expiring?within=3650d", headers=program.headers)
    assert response.status_code == 200, response.text
    assert response.json()["policy"] == "never"
    assert response.json()["expiring"] == [] and response.json()["total"] == 0


@pytest.mark.parametrize(
    "within", ["30", "d", "-1d", "3651d", "30days", "1e3d", "30D", " 30d", "99999d", "", "1.5d"]
)
async def test_expiring_refuses_bad_horizons(client, program, within):
    await earn(client, program, "oz", 10)
    response = await client.get(
        "/v1/members/oz/expiring", params={"within": within}, headers=program.headers
    )
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == "validation_error"


async def test_expiring_is_a_read_of_this_programs_members(client, program, other_program):
    await earn(client, program, "pat", 10)
    for who, where in (("nobody", program), ("pat", other_program)):
        response = await client.get(f"/v1/members/{who}/expiring", headers=where.headers)
        assert response.status_code == 404, response.text
        assert response.json()["code"] == "member_not_found"
    earn_only = await program.key_with("earn")
    forbidden = await client.get(
        "/v1/members/pat/expiring", headers={"Authorization": f"Bearer {earn_only}"}
    )
    assert forbidden.status_code == 403
    reader = await program.key_with("read")
    allowed = await client.get(
        "/v1/members/pat/expiring", headers={"Authorization": f"Bearer {reader}"}
    )
    assert allowed.status_code == 200


# ------------------------------------------------------------------------ verify, rebuild


async def test_verify_catches_lot_drift(app, client, database, sql):
    program = await expiring_program(app, database, sql, {"kind": "lifetime", "months": 12})
    await earn_at(client, program, "quin", 50, now() - timedelta(days=5))
    await redeem(client, program, "quin", 20)
    await check_ledger(database, program)
    names = {"lots_match_available", "lots_match_movements", "lots_follow_entries"}
    failing = set()
    with contextlib.suppress(_RolledBack):
        async with database.transaction() as tx:
            await tx.execute(
                "UPDATE lots SET remaining = remaining - 1 WHERE program_id = $1", program.id
            )
            for check in CHECKS:
                if check.name in names and await tx.fetch(check.sql):
                    failing.add(check.name)
            raise _RolledBack
    assert failing == {"lots_match_available", "lots_match_movements"}


async def test_verify_and_rebuild_after_expiry(app, client, database, database_url, sql):
    program = await expiring_program(app, database, sql, {"kind": "lifetime", "months": 1})
    await earn_at(client, program, "ray", 80, now() - timedelta(days=50))
    await earn_at(client, program, "ray", 20, now())
    assert (await redeem(client, program, "ray", 10)).status_code == 201
    assert await available(client, program, "ray") == 10
    rebuilt = await run_cli(database_url, "rebuild")
    assert rebuilt.returncode == 0, rebuilt.stdout + rebuilt.stderr
    verified = await run_cli(database_url, "verify")
    assert verified.returncode == 0, verified.stdout
    for name in (
        "lots_match_available",
        "lots_match_movements",
        "lots_follow_entries",
        "lots_expire_on_time",
    ):
        assert name in verified.stdout


async def test_rebuild_repairs_a_tampered_lot(app, client, database, database_url, sql):
    program = await expiring_program(app, database, sql, {"kind": "lifetime", "months": 12})
    await earn_at(client, program, "sol", 50, now() - timedelta(days=5))
    assert (await redeem(client, program, "sol", 20)).status_code == 201
    lot_id, remaining = await sql.fetchrow(
        "SELECT id, remaining FROM lots WHERE program_id = $1", program.id
    )
    assert remaining == 30
    await sql.execute("UPDATE lots SET remaining = 7 WHERE id = $1", lot_id)
    drifted = await run_cli(database_url, "verify")
    assert drifted.returncode == 1
    assert "lots_match_movements" in drifted.stdout
    rebuilt = await run_cli(database_url, "rebuild")
    assert rebuilt.returncode == 0, rebuilt.stdout + rebuilt.stderr
    assert await sql.fetchval("SELECT remaining FROM lots WHERE id = $1", lot_id) == 30
    verified = await run_cli(database_url, "verify")
    assert verified.returncode == 0, verified.stdout
