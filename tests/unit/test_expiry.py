"""Worked examples of expiry policies (app.domain.expiry), and of the spending order of lots as
the tests' oracle states it (tests.oracles.lots; the ledger spends them in SQL). No database."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import TypeAdapter, ValidationError

from app.domain.dates import start_of_day
from app.domain.expiry import (
    ExpiryPolicy,
    FixedDatePolicy,
    InactivityPolicy,
    LifetimePolicy,
    NeverPolicy,
    inactivity_expires_at,
    lot_expires_at,
    valid_through,
)
from tests.oracles.lots import (
    InsufficientPoints,
    Lot,
    LotPoints,
    consume_fifo,
    due_lots,
    fifo_order,
)

PARIS = "Europe/Paris"
TWELVE_MONTHS = LifetimePolicy(months=12)
END_OF_DECEMBER = FixedDatePolicy(month=12, day=31)


def d(text: str) -> date:
    return date.fromisoformat(text)


def at(text: str) -> datetime:
    return datetime.fromisoformat(text)


# --- when a lot lapses ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("policy", "earned_on", "expected", "why"),
    [
        (TWELVE_MONTHS, "2025-03-15", "2026-03-15", "valid through the anniversary"),
        (TWELVE_MONTHS, "2024-02-29", "2025-02-28", "no 29 February in 2025: the 28th"),
        (LifetimePolicy(months=48), "2024-02-29", "2028-02-29", "four years on, a 29th again"),
        (LifetimePolicy(months=1), "2024-01-31", "2024-02-29", "31 Jan + 1 month, leap year"),
        (LifetimePolicy(months=1), "2023-01-31", "2023-02-28", "31 Jan + 1 month, common year"),
        (LifetimePolicy(months=1), "2025-03-31", "2025-04-30", "April has 30 days"),
        (
            LifetimePolicy(months=12, round_to="month_end"),
            "2025-03-15",
            "2026-03-31",
            "to the month end",
        ),
        (
            LifetimePolicy(months=12, round_to="month_end"),
            "2023-02-10",
            "2024-02-29",
            "Feb month end, leap",
        ),
        (
            LifetimePolicy(months=1, round_to="quarter_end"),
            "2025-02-15",
            "2025-03-31",
            "15 Mar is in Q1",
        ),
        (
            LifetimePolicy(months=12, round_to="quarter_end"),
            "2025-05-20",
            "2026-06-30",
            "20 May is in Q2",
        ),
        (
            LifetimePolicy(months=12, round_to="quarter_end"),
            "2025-12-31",
            "2026-12-31",
            "already a quarter end",
        ),
        (END_OF_DECEMBER, "2025-06-01", "2026-12-31", "earned in 2025: through the end of 2026"),
        (END_OF_DECEMBER, "2025-12-31", "2026-12-31", "the last day of 2025 still counts as 2025"),
        (END_OF_DECEMBER, "2026-01-01", "2027-12-31", "the first day of 2026 is 2026"),
        (
            FixedDatePolicy(month=12, day=31, years_after=0),
            "2025-12-30",
            "2025-12-31",
            "the next 31 Dec itself",
        ),
        (FixedDatePolicy(month=3, day=31), "2025-04-01", "2027-03-31", "fiscal year to 31 March"),
        (
            FixedDatePolicy(month=3, day=31),
            "2025-03-31",
            "2026-03-31",
            "the fiscal year's last day",
        ),
        (NeverPolicy(), "2025-06-01", None, "never"),
        (InactivityPolicy(months=18), "2025-06-01", None, "lots have no date of their own"),
    ],
)
def test_valid_through(policy: Any, earned_on: str, expected: str | None, why: str) -> None:
    last = valid_through(policy, d(earned_on))
    assert (last.isoformat() if last else None) == expected, why


def test_expires_at_is_the_start_of_the_next_local_day() -> None:
    # Winter: earned 15 March 2025, valid through 15 March 2026; gone at 16 March 00:00 in
    # Paris, which is UTC+1 then: 2026-03-15T23:00Z.
    assert lot_expires_at(TWELVE_MONTHS, at("2025-03-15T10:00:00+01:00"), PARIS) == at(
        "2026-03-15T23:00:00+00:00"
    )
    # Summer: earned 1 July 2025, gone at 2 July 2026 00:00 (UTC+2): 2026-07-01T22:00Z.
    assert lot_expires_at(TWELVE_MONTHS, at("2025-07-01T10:00:00+02:00"), PARIS) == at(
        "2026-07-01T22:00:00+00:00"
    )
    # Month end across the DST change of 29 March 2026: valid through 31 March, gone at
    # 1 April 00:00 CEST = 2026-03-31T22:00Z.
    month_end = LifetimePolicy(months=12, round_to="month_end")
    assert lot_expires_at(month_end, at("2025-03-15T09:00:00+00:00"), PARIS) == at(
        "2026-03-31T22:00:00+00:00"
    )
    assert lot_expires_at(NeverPolicy(), at("2025-03-15T09:00:00+00:00"), PARIS) is None


def test_the_earn_date_is_the_program_s_local_date() -> None:
    # 2025-12-31T23:30Z is already 1 January 2026 in Paris: earned in 2026, through 2027.
    assert lot_expires_at(END_OF_DECEMBER, at("2025-12-31T23:30:00+00:00"), PARIS) == at(
        "2027-12-31T23:00:00+00:00"
    )
    # An hour earlier it is 31 December 2025 in Paris: through the end of 2026.
    assert lot_expires_at(END_OF_DECEMBER, at("2025-12-31T22:30:00+00:00"), PARIS) == at(
        "2026-12-31T23:00:00+00:00"
    )


def test_a_missing_midnight_starts_the_day_at_the_clock_change() -> None:
    # Chile moved its clocks from 00:00 to 01:00 on 11 September 2022: that day began at
    # 01:00 -03 = 04:00Z, and was 23 hours long.
    assert start_of_day(d("2022-09-11"), "America/Santiago") == at("2022-09-11T04:00:00+00:00")
    assert start_of_day(d("2022-09-12"), "America/Santiago") == at("2022-09-12T03:00:00+00:00")


def test_inactivity_expiry_follows_the_last_activity() -> None:
    policy = InactivityPolicy(months=18)
    # Last earn or redemption 10 May 2025: 18 months later is 10 November 2026; the points
    # lapse at 11 November 00:00 in Paris (UTC+1): 2026-11-10T23:00Z.
    assert inactivity_expires_at(policy, at("2025-05-10T15:00:00+02:00"), PARIS) == at(
        "2026-11-10T23:00:00+00:00"
    )
    # A redemption on 31 August 2025 moves it: 28 February 2027 (no 31st), lapsing 1 March.
    assert inactivity_expires_at(policy, at("2025-08-31T12:00:00+02:00"), PARIS) == at(
        "2027-02-28T23:00:00+00:00"
    )


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(ValueError, match="time zone"):
        lot_expires_at(TWELVE_MONTHS, datetime(2025, 3, 15, 10, 0), PARIS)
    with pytest.raises(ValueError, match="time zone"):
        Lot(id=1, earned_at=datetime(2025, 3, 15), expires_at=None, remaining=1)
    with pytest.raises(ValueError, match="negative"):
        Lot(id=1, earned_at=datetime(2025, 3, 15, tzinfo=UTC), expires_at=None, remaining=-1)


# --- FIFO spending ----------------------------------------------------------------------------

EARNED = datetime(2025, 1, 1, tzinfo=UTC)
DEC_2026 = datetime(2026, 12, 31, 23, 0, tzinfo=UTC)
JUN_2026 = datetime(2026, 6, 30, 22, 0, tzinfo=UTC)
WALLET = [
    Lot(id=1, earned_at=EARNED, expires_at=DEC_2026, remaining=100),
    Lot(id=2, earned_at=EARNED + timedelta(days=30), expires_at=JUN_2026, remaining=50),
    Lot(id=3, earned_at=EARNED, expires_at=None, remaining=500),
]


def test_fifo_spends_what_expires_first() -> None:
    # 120 points: all 50 of lot 2 (expires June), then 70 of lot 1 (December); lot 3 never
    # expires and is spent last.
    assert consume_fifo(WALLET, 120) == (LotPoints(2, 50), LotPoints(1, 70))
    # 650 is everything: 50 + 100 + 500.
    assert consume_fifo(WALLET, 650) == (LotPoints(2, 50), LotPoints(1, 100), LotPoints(3, 500))
    assert consume_fifo(WALLET, 0) == ()


def test_fifo_refuses_to_spend_more_than_there_is() -> None:
    with pytest.raises(InsufficientPoints, match="651 points asked, 650 available"):
        consume_fifo(WALLET, 651)
    with pytest.raises(ValueError, match="negative"):
        consume_fifo(WALLET, -1)


def test_fifo_ties_go_to_the_older_earn_then_the_lower_id() -> None:
    same_expiry = [
        Lot(id=9, earned_at=EARNED, expires_at=DEC_2026, remaining=10),
        Lot(id=4, earned_at=EARNED + timedelta(hours=1), expires_at=DEC_2026, remaining=10),
        Lot(id=7, earned_at=EARNED, expires_at=DEC_2026, remaining=10),
        Lot(id=5, earned_at=EARNED, expires_at=DEC_2026, remaining=0),
    ]
    # 9 and 7 were earned first (7 has the lower id), then 4; lot 5 is empty and skipped.
    assert [lot.id for lot in fifo_order(same_expiry)] == [5, 7, 9, 4]
    assert consume_fifo(same_expiry, 25) == (LotPoints(7, 10), LotPoints(9, 10), LotPoints(4, 5))


def test_fifo_compares_instants_not_wall_clocks() -> None:
    # 23:00 in Paris (UTC+1) is 22:00Z, before 22:30Z: the Paris lot goes first.
    paris = Lot(id=2, earned_at=EARNED, expires_at=at("2026-01-01T23:00:00+01:00"), remaining=5)
    utc = Lot(id=1, earned_at=EARNED, expires_at=at("2026-01-01T22:30:00+00:00"), remaining=5)
    assert consume_fifo([utc, paris], 5) == (LotPoints(2, 5),)


def test_lot_ids_must_be_unique() -> None:
    with pytest.raises(ValueError, match="unique"):
        consume_fifo([WALLET[0], WALLET[0]], 1)


# --- due lots ---------------------------------------------------------------------------------


def test_only_what_is_left_of_a_lot_expires() -> None:
    lots = [
        Lot(id=1, earned_at=EARNED, expires_at=JUN_2026, remaining=80),  # 300 earned, 220 spent
        Lot(id=2, earned_at=EARNED, expires_at=JUN_2026, remaining=0),  # fully spent
        Lot(id=3, earned_at=EARNED, expires_at=DEC_2026, remaining=40),  # not yet due
        Lot(id=4, earned_at=EARNED, expires_at=None, remaining=999),  # never
    ]
    assert due_lots(lots, JUN_2026) == (LotPoints(1, 80),)
    # One microsecond before the instant nothing is due; at the instant it is.
    assert due_lots(lots, JUN_2026 - timedelta(microseconds=1)) == ()
    assert due_lots(lots, DEC_2026) == (LotPoints(1, 80), LotPoints(3, 40))


def test_inactivity_expires_every_open_lot() -> None:
    lots = [
        Lot(id=1, earned_at=EARNED, expires_at=None, remaining=80),
        Lot(id=2, earned_at=EARNED, expires_at=None, remaining=0),
        Lot(id=3, earned_at=EARNED + timedelta(days=1), expires_at=None, remaining=40),
    ]
    lapse = inactivity_expires_at(InactivityPolicy(months=12), EARNED + timedelta(days=1), PARIS)
    assert due_lots(lots, lapse - timedelta(seconds=1), account_expires_at=lapse) == ()
    assert due_lots(lots, lapse, account_expires_at=lapse) == (LotPoints(1, 80), LotPoints(3, 40))
    with pytest.raises(ValueError, match="time zone"):
        due_lots(lots, datetime(2026, 1, 1))


# --- policies as stored JSON ------------------------------------------------------------------

POLICY = TypeAdapter[ExpiryPolicy](ExpiryPolicy)


def test_policies_round_trip_as_json() -> None:
    for policy in (TWELVE_MONTHS, END_OF_DECEMBER, InactivityPolicy(months=24), NeverPolicy()):
        assert POLICY.validate_json(POLICY.dump_json(policy)) == policy
    assert POLICY.validate_python(
        {"kind": "lifetime", "months": 12, "round_to": "quarter_end"}
    ) == LifetimePolicy(months=12, round_to="quarter_end")


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({"kind": "fixed_date", "month": 2, "day": 29}, "not a day of every year"),
        ({"kind": "fixed_date", "month": 4, "day": 31}, "not a day of every year"),
        ({"kind": "fixed_date", "month": 13, "day": 1}, "less than or equal to 12"),
        ({"kind": "lifetime", "months": 0}, "greater than or equal to 1"),
        ({"kind": "lifetime", "months": "12"}, "valid integer"),
        ({"kind": "lifetime", "months": 12, "round_to": "year_end"}, "month_end"),
        ({"kind": "inactivity", "months": 12, "warn": True}, "Extra inputs"),
        ({"kind": "sometimes"}, "does not match any of the expected tags"),
    ],
)
def test_invalid_policies_are_refused(document: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        POLICY.validate_python(document)


# --- properties -------------------------------------------------------------------------------

instants = st.datetimes(
    min_value=datetime(2025, 1, 1), max_value=datetime(2027, 12, 31), timezones=st.just(UTC)
)


@st.composite
def wallets(draw: st.DrawFn) -> list[Lot]:
    count = draw(st.integers(min_value=0, max_value=12))
    return [
        Lot(
            id=index,
            earned_at=draw(instants),
            expires_at=draw(st.none() | instants),
            remaining=draw(st.integers(min_value=0, max_value=1000)),
        )
        for index in draw(st.permutations(range(count)))
    ]


@settings(max_examples=300, deadline=None)
@given(lots=wallets(), amount=st.integers(min_value=0, max_value=13_000))
def test_fifo_never_consumes_more_than_available(lots: list[Lot], amount: int) -> None:
    available = sum(lot.remaining for lot in lots)
    if amount > available:
        with pytest.raises(InsufficientPoints):
            consume_fifo(lots, amount)
        return
    taken = consume_fifo(lots, amount)
    by_id = {lot.id: lot for lot in lots}
    assert sum(part.points for part in taken) == amount
    assert all(0 < part.points <= by_id[part.lot_id].remaining for part in taken)
    assert len({part.lot_id for part in taken}) == len(taken)
    # FIFO: the lots taken are the first non-empty lots in spending order, all but the last
    # emptied completely.
    order = [lot.id for lot in fifo_order(lots) if lot.remaining > 0]
    assert [part.lot_id for part in taken] == order[: len(taken)]
    assert all(part.points == by_id[part.lot_id].remaining for part in taken[:-1])


@settings(max_examples=200, deadline=None)
@given(lots=wallets(), now=instants, amount=st.integers(min_value=0, max_value=3000))
def test_spent_points_never_expire(lots: list[Lot], now: datetime, amount: int) -> None:
    amount = min(amount, sum(lot.remaining for lot in lots))
    spent = {part.lot_id: part.points for part in consume_fifo(lots, amount)}
    after = [
        Lot(lot.id, lot.earned_at, lot.expires_at, lot.remaining - spent.get(lot.id, 0))
        for lot in lots
    ]
    due = due_lots(after, now)
    by_id = {lot.id: lot for lot in after}
    assert all(0 < part.points == by_id[part.lot_id].remaining for part in due)
    assert sum(part.points for part in due) + amount <= sum(lot.remaining for lot in lots)
    assert all(by_id[part.lot_id].expires_at is not None for part in due)
