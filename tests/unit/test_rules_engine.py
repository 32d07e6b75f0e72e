"""Worked examples of the earning-rule engine (no database).

Each test reads like a textbook exercise: the program's rules, the order, the member, the
expected points, and -- in comments -- how the figure is derived.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from app.domain.earning import (
    ChallengeState,
    EarnOverflow,
    EarnResult,
    MemberContext,
    Order,
    OrderItem,
    RuleSet,
    apportion,
    evaluate_earn,
)
from app.domain.types import MAX_AMOUNT
from tests.oracles.earn import base_rate_points

PARIS = "Europe/Paris"
# Saturday 6 June 2026, 10:00 in Paris (UTC+2 in summer).
SATURDAY = datetime(2026, 6, 6, 8, 0, tzinfo=UTC)
# Wednesday 10 June 2026, 10:00 in Paris.
WEDNESDAY = datetime(2026, 6, 10, 8, 0, tzinfo=UTC)
NOBODY = MemberContext()

BASE: dict[str, Any] = {"kind": "base_rate", "id": "base", "points_per_unit": "1"}
NO_GIFT_CARDS: dict[str, Any] = {
    "kind": "exclusion",
    "id": "no-gift-cards",
    "categories": ["gift_card"],
}
COFFEE_X2: dict[str, Any] = {
    "kind": "item_multiplier",
    "id": "coffee-x2",
    "categories": ["coffee"],
    "multiplier": 2,
}
WEEKEND_X2: dict[str, Any] = {
    "kind": "campaign_multiplier",
    "id": "double-weekend",
    "multiplier": 2,
    "window": {"starts_on": "2026-06-06", "ends_on": "2026-06-07", "weekdays": ["sat", "sun"]},
}


def ruleset(*rules: dict[str, Any], mode: str = "stack", timezone: str = PARIS) -> RuleSet:
    return RuleSet.model_validate(
        {"version": 7, "multiplier_mode": mode, "timezone": timezone, "rules": list(rules)}
    )


def item(sku: str, category: str | None, quantity: int, unit_price: int) -> OrderItem:
    return OrderItem(sku=sku, category=category, quantity=quantity, unit_price=unit_price)


def order(
    at: datetime,
    *items: OrderItem,
    channel: str = "web",
    store_id: str | None = None,
    exponent: int = 2,
) -> Order:
    return Order.model_validate(
        {
            "occurred_at": at,
            "channel": channel,
            "store_id": store_id,
            "currency_exponent": exponent,
            "items": items,
        }
    )


def lines(result: EarnResult) -> list[tuple[str | None, int]]:
    return [(line.rule_id, line.points) for line in result.breakdown]


def earn(rules: RuleSet, the_order: Order, member: MemberContext = NOBODY) -> EarnResult:
    result = evaluate_earn(rules, the_order, member)
    assert sum(line.points for line in result.breakdown) == result.total
    return result


def spend(euros: str) -> int:
    """Cents of a euro amount given as text: "4.50" -> 450."""
    return int(Decimal(euros) * 100)


BASKET = (
    item("espresso", "coffee", 2, spend("4.50")),  # EUR 9.00
    item("novel", "book", 1, spend("20.00")),  # EUR 20.00
    item("gift-50", "gift_card", 1, spend("50.00")),  # EUR 50.00, excluded
)
WELCOME: dict[str, Any] = {"kind": "first_purchase_bonus", "id": "welcome", "points": 100}
CAP_500: dict[str, Any] = {"kind": "order_cap", "id": "cap-500", "max_points": 500}
GOLD = MemberContext(tier_multiplier=Decimal("1.5"), is_first_purchase=True)


# --- the module's worked example --------------------------------------------------------------


def test_textbook_order_in_stack_mode() -> None:
    rules = ruleset(BASE, NO_GIFT_CARDS, COFFEE_X2, WEEKEND_X2, WELCOME, CAP_500)
    result = earn(rules, order(SATURDAY, *BASKET), GOLD)
    # The gift card leaves the base: EUR 9.00 + EUR 20.00 = EUR 29.00, 29 base points.
    # Coffee 9 -> x2 coffee (+9) = 18 -> x2 weekend (+18) = 36 -> x1.5 Gold (+18) = 54.
    # Book 20 -> x2 weekend (+20) = 40 -> x1.5 Gold (+20) = 60.
    # Multiplied: 54 + 60 = 114 = base 29 + coffee 9 + weekend 18+20 + tier 18+20.
    # The welcome bonus adds 100 after the multipliers: 214, under the cap of 500.
    assert lines(result) == [
        ("base", 29),
        ("coffee-x2", 9),
        ("double-weekend", 18 + 20),
        (None, 18 + 20),
        ("welcome", 100),
    ]
    assert result.total == 29 + 9 + 38 + 38 + 100 == 214
    assert result.breakdown[3].kind == "tier_multiplier"
    assert result.earning_base == spend("29.00")
    assert result.ruleset_version == 7
    assert result.awarded_once == ("welcome",)


def test_textbook_order_in_best_mode() -> None:
    rules = ruleset(BASE, NO_GIFT_CARDS, COFFEE_X2, WEEKEND_X2, WELCOME, CAP_500, mode="best")
    result = earn(rules, order(SATURDAY, *BASKET), GOLD)
    # Coffee: candidates x2 (coffee), x2 (weekend), x1.5 (Gold): the coffee rule wins the tie
    # by coming first in the list: 9 -> 18 (+9). Book: x2 (weekend) beats x1.5: 20 -> 40 (+20).
    # 18 + 40 = 58 multiplied, plus the welcome 100 = 158.
    assert lines(result) == [
        ("base", 29),
        ("coffee-x2", 9),
        ("double-weekend", 20),
        ("welcome", 100),
    ]
    assert result.total == 58 + 100


def test_the_same_order_on_a_wednesday_has_no_weekend() -> None:
    rules = ruleset(BASE, NO_GIFT_CARDS, COFFEE_X2, WEEKEND_X2)
    result = earn(rules, order(WEDNESDAY, *BASKET))
    # Coffee 9 x2 = 18, book 20: 38 (29 base + 9 coffee).
    assert lines(result) == [("base", 29), ("coffee-x2", 9)]


# --- base rate and rounding -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cents", "rate", "rounding", "expected", "why"),
    [
        (1299, "2.6", "floor", 33, "12.99 x 2.6 = 33.774, rounded down"),
        (1299, "2.6", "nearest", 34, "33.774 rounds to the nearest, 34"),
        (1250, "1", "nearest", 13, "12.5 is a half: half up gives 13"),
        (1250, "1", "floor", 12, "12.5 rounded down is 12"),
        (1249, "1", "nearest", 12, "12.49 rounds to 12"),
        (99, "1", "floor", 0, "99 cents earn nothing at 1 per euro"),
        (100, "1", "floor", 1, "exactly one euro is exactly one point"),
    ],
)
def test_base_rate_rounding(cents: int, rate: str, rounding: str, expected: int, why: str) -> None:
    rules = ruleset({**BASE, "points_per_unit": rate, "rounding": rounding})
    result = earn(rules, order(WEDNESDAY, item("x", None, 1, cents)))
    assert result.total == expected, why
    assert lines(result) == [("base", expected)], why


def test_rounding_happens_once_for_the_whole_order() -> None:
    # Two items at EUR 1.50 each: 1.5 + 1.5 = 3.0 points, not floor(1.5) + floor(1.5) = 2.
    result = earn(ruleset(BASE), order(WEDNESDAY, item("a", None, 1, 150), item("b", None, 1, 150)))
    assert result.total == 3


def test_rounding_happens_after_the_multipliers() -> None:
    # EUR 12.99 on a double weekend: floor(12.99 x 2) = floor(25.98) = 25 points, where
    # rounding first would give floor(12.99) x 2 = 24. The residue of the lines goes to the
    # largest fraction: base 12.99 -> 12 (.99), weekend +12.99 -> 12 (.99); 25 - 24 = 1 point
    # missing, tie on .99: the earlier line (base) gets it.
    result = earn(ruleset(BASE, WEEKEND_X2), order(SATURDAY, item("x", None, 1, 1299)))
    assert lines(result) == [("base", 13), ("double-weekend", 12)]


def test_rounding_residue_goes_to_the_largest_fraction() -> None:
    campaign = {**WEEKEND_X2, "multiplier": "1.5"}
    member = MemberContext(tier_multiplier=Decimal("1.2"))
    the_order = order(SATURDAY, item("x", None, 1, 1050))
    # Exact lines: base 10.50; campaign 10.50 x 0.5 = +5.25 (running 15.75);
    # tier 15.75 x 0.2 = +3.15 (running 18.90). Exact total 18.90.
    floor = earn(ruleset(BASE, campaign), the_order, member)
    # floor(18.90) = 18 = 10 + 5 + 3: nothing is missing.
    assert lines(floor) == [("base", 10), ("double-weekend", 5), (None, 3)]
    nearest = earn(ruleset({**BASE, "rounding": "nearest"}, campaign), the_order, member)
    # 18.90 to the nearest is 19: one point is missing; fractions .50, .25, .15: base gets it.
    assert lines(nearest) == [("base", 11), ("double-weekend", 5), (None, 3)]


def test_a_multiplier_below_one_has_a_negative_line() -> None:
    half = {
        "kind": "item_multiplier",
        "id": "clearance",
        "categories": ["sale"],
        "multiplier": "0.5",
    }
    result = earn(ruleset(BASE, half), order(WEDNESDAY, item("x", "sale", 1, 1050)))
    # 10.50 base, x0.5 takes 5.25 off: 5.25 exact, 5 points. Floors: 10 and -6 (sum 4); one
    # point missing; fractions: .50 (10.50) and .75 (-5.25 = -6 + .75): the clearance line.
    assert lines(result) == [("base", 10), ("clearance", -5)]
    assert result.total == 5


def test_stacked_multipliers_are_credited_in_list_order() -> None:
    times_three = {"kind": "item_multiplier", "id": "x3", "skus": ["x"], "multiplier": 3}
    result = earn(ruleset(BASE, WEEKEND_X2, times_three), order(SATURDAY, item("x", None, 1, 1000)))
    # 10 base; the weekend comes first in the list: x2 adds 10 (20); x3 adds 40 (60).
    assert lines(result) == [("base", 10), ("double-weekend", 10), ("x3", 40)]


def test_yen_have_no_minor_unit() -> None:
    result = earn(
        ruleset({**BASE, "points_per_unit": "0.01"}),
        order(WEDNESDAY, item("x", None, 1, 1500), exponent=0),
    )
    # JPY 1500 at 1 point per 100 yen: 15 points.
    assert result.total == 15


def test_the_first_base_rate_that_applies_wins() -> None:
    big = {
        "kind": "base_rate",
        "id": "big-basket",
        "points_per_unit": "2",
        "min_order_amount": spend("100.00"),
    }
    rules = ruleset(big, BASE)
    # EUR 99.99 misses the big-basket minimum: the next base rate, 1 per euro, gives 99.
    assert lines(earn(rules, order(WEDNESDAY, item("x", None, 1, 9999)))) == [("base", 99)]
    # EUR 100.00 meets it exactly: 2 per euro, 200.
    assert lines(earn(rules, order(WEDNESDAY, item("x", None, 1, 10000)))) == [("big-basket", 200)]


def test_without_a_base_rate_only_bonuses_earn() -> None:
    result = earn(ruleset(WEEKEND_X2, WELCOME), order(SATURDAY, item("x", None, 1, 5000)), GOLD)
    assert lines(result) == [("welcome", 100)]


# --- exclusions, empty orders -----------------------------------------------------------------


def test_an_order_of_only_excluded_items_earns_nothing_not_even_bonuses() -> None:
    rules = ruleset(BASE, NO_GIFT_CARDS, WELCOME)
    result = earn(rules, order(WEDNESDAY, item("gift-50", "gift_card", 2, 5000)), GOLD)
    assert result.total == 0
    assert result.breakdown == ()
    assert result.earning_base == 0
    assert result.awarded_once == ()  # the welcome bonus is still there for a real purchase


def test_an_empty_order_earns_nothing() -> None:
    result = earn(ruleset(BASE, WELCOME), order(WEDNESDAY), GOLD)
    assert (result.total, result.breakdown, result.earning_base) == (0, (), 0)


def test_an_exclusion_beats_a_multiplier_and_matches_by_sku() -> None:
    no_tobacco = {"kind": "exclusion", "id": "no-tobacco", "skus": ["cigars"]}
    tobacco_x5 = {"kind": "item_multiplier", "id": "x5", "skus": ["cigars"], "multiplier": 5}
    rules = ruleset(BASE, tobacco_x5, no_tobacco)
    result = earn(
        rules, order(WEDNESDAY, item("cigars", "shop", 1, 3000), item("pen", "shop", 1, 500))
    )
    # Only the EUR 5 pen earns: 5 points; the cigars' multiplier has nothing to multiply.
    assert lines(result) == [("base", 5)]
    assert result.earning_base == 500


def test_a_free_item_earns_nothing_and_leaves_no_multiplier_line() -> None:
    rules = ruleset(BASE, COFFEE_X2)
    result = earn(
        rules, order(WEDNESDAY, item("free-coffee", "coffee", 1, 0), item("pen", None, 1, 500))
    )
    assert lines(result) == [("base", 5)]


# --- windows, time zones, DST, channels, stores -----------------------------------------------


def test_a_weekday_is_the_program_s_local_weekday() -> None:
    sunday_only = {**WEEKEND_X2, "window": {**WEEKEND_X2["window"], "weekdays": ["sun"]}}
    rules = ruleset(BASE, sunday_only)
    # 2026-06-06T22:30Z is Sunday 00:30 in Paris (UTC+2): the Sunday campaign applies.
    late = earn(rules, order(datetime(2026, 6, 6, 22, 30, tzinfo=UTC), item("x", None, 1, 1000)))
    assert late.total == 20
    # 2026-06-06T21:30Z is still Saturday 23:30 in Paris.
    early = earn(rules, order(datetime(2026, 6, 6, 21, 30, tzinfo=UTC), item("x", None, 1, 1000)))
    assert early.total == 10
    # The same instant in a New York program is Saturday 17:30: no campaign either.
    new_york = ruleset(
        BASE,
        {**sunday_only, "window": {**sunday_only["window"], "starts_on": "2026-06-06"}},
        timezone="America/New_York",
    )
    assert (
        earn(
            new_york, order(datetime(2026, 6, 6, 22, 30, tzinfo=UTC), item("x", None, 1, 1000))
        ).total
        == 10
    )


def test_a_date_window_includes_both_of_its_days_to_the_last_second() -> None:
    rules = ruleset(BASE, WEEKEND_X2)
    ten_euros = item("x", None, 1, 1000)
    # Sunday 7 June 23:59:59 in Paris is 21:59:59Z: inside.
    assert earn(rules, order(datetime(2026, 6, 7, 21, 59, 59, tzinfo=UTC), ten_euros)).total == 20
    # Monday 8 June 00:00 in Paris is 22:00Z: outside.
    assert earn(rules, order(datetime(2026, 6, 7, 22, 0, tzinfo=UTC), ten_euros)).total == 10
    # Saturday 6 June 00:00 in Paris is Friday 22:00Z: inside.
    assert earn(rules, order(datetime(2026, 6, 5, 22, 0, tzinfo=UTC), ten_euros)).total == 20
    # One second earlier is Friday 23:59:59 in Paris: outside.
    assert earn(rules, order(datetime(2026, 6, 5, 21, 59, 59, tzinfo=UTC), ten_euros)).total == 10


NIGHT_OWL: dict[str, Any] = {
    "kind": "campaign_multiplier",
    "id": "night-owl",
    "multiplier": 3,
    "window": {
        "starts_on": "2026-01-01",
        "ends_on": "2026-12-31",
        "from_time": "02:00",
        "until_time": "03:00",
    },
}


@pytest.mark.parametrize(
    ("instant", "expected", "why"),
    [
        # 29 March 2026: at 02:00 CET the clocks jump to 03:00 CEST; 02:00-03:00 never happens.
        (datetime(2026, 3, 29, 0, 59, tzinfo=UTC), 10, "01:59 CET: before the window"),
        (datetime(2026, 3, 29, 1, 0, tzinfo=UTC), 10, "03:00 CEST: the hour was skipped"),
        # 25 October 2026: at 03:00 CEST the clocks go back to 02:00 CET; 02:xx happens twice.
        (datetime(2026, 10, 25, 0, 30, tzinfo=UTC), 30, "02:30 CEST, the first time"),
        (datetime(2026, 10, 25, 1, 30, tzinfo=UTC), 30, "02:30 CET, the second time"),
        (datetime(2026, 10, 25, 2, 0, tzinfo=UTC), 10, "03:00 CET: until is exclusive"),
        (datetime(2026, 6, 10, 0, 0, tzinfo=UTC), 30, "02:00 CEST in June: from is inclusive"),
    ],
)
def test_hours_are_wall_clock_hours_across_dst(instant: datetime, expected: int, why: str) -> None:
    rules = ruleset(BASE, NIGHT_OWL)
    assert earn(rules, order(instant, item("x", None, 1, 1000))).total == expected, why


def test_channel_and_store_filters() -> None:
    app_only = {**WEEKEND_X2, "id": "app-double", "channels": ["app"]}
    flagship = {
        "kind": "campaign_bonus",
        "id": "flagship",
        "points": 50,
        "stores": ["paris-01"],
        "window": WEEKEND_X2["window"],
    }
    rules = ruleset(BASE, app_only, flagship)
    ten_euros = item("x", None, 1, 1000)
    assert earn(rules, order(SATURDAY, ten_euros, channel="app")).total == 20
    assert earn(rules, order(SATURDAY, ten_euros, channel="web")).total == 10
    assert earn(rules, order(SATURDAY, ten_euros, channel="pos", store_id="paris-01")).total == 60
    assert earn(rules, order(SATURDAY, ten_euros, channel="pos", store_id="lyon-02")).total == 10
    # An order without a store never meets a store filter.
    assert earn(rules, order(SATURDAY, ten_euros, channel="pos")).total == 10


# --- bonuses ----------------------------------------------------------------------------------


def test_a_campaign_bonus_needs_its_minimum_and_is_not_multiplied() -> None:
    bonus = {
        "kind": "campaign_bonus",
        "id": "spend-50-get-100",
        "points": 100,
        "min_order_amount": spend("50.00"),
        "window": WEEKEND_X2["window"],
    }
    rules = ruleset(BASE, WEEKEND_X2, bonus)
    # EUR 50 on the weekend: 50 x2 = 100 multiplied, plus 100 (not doubled) = 200.
    assert lines(earn(rules, order(SATURDAY, item("x", None, 1, 5000)))) == [
        ("base", 50),
        ("double-weekend", 50),
        ("spend-50-get-100", 100),
    ]
    # EUR 49.99: 49.99 x2 = 99.98 -> 99 points, and no bonus.
    assert earn(rules, order(SATURDAY, item("x", None, 1, 4999))).total == 99


def test_the_first_purchase_bonus_only_on_the_first_purchase() -> None:
    rules = ruleset(BASE, WELCOME)
    ten_euros = order(WEDNESDAY, item("x", None, 1, 1000))
    first = earn(rules, ten_euros, MemberContext(is_first_purchase=True))
    assert (first.total, first.awarded_once) == (10 + 100, ("welcome",))
    later = earn(rules, ten_euros, MemberContext(is_first_purchase=False))
    assert (later.total, later.awarded_once) == (10, ())


BIRTHDAY_MONTH: dict[str, Any] = {
    "kind": "birthday_bonus",
    "id": "birthday",
    "points": 250,
    "on": "month",
}
BIRTHDAY_DAY: dict[str, Any] = {**BIRTHDAY_MONTH, "on": "day"}


@pytest.mark.parametrize(
    ("rule", "birthday", "given", "instant", "bonus", "why"),
    [
        (BIRTHDAY_MONTH, date(1990, 6, 21), None, WEDNESDAY, 250, "June birthday, June order"),
        (BIRTHDAY_MONTH, date(1990, 7, 1), None, WEDNESDAY, 0, "July birthday, June order"),
        (BIRTHDAY_MONTH, date(1990, 6, 21), date(2026, 6, 2), WEDNESDAY, 0, "given this year"),
        (BIRTHDAY_MONTH, date(1990, 6, 21), date(2025, 6, 30), WEDNESDAY, 250, "given last year"),
        (BIRTHDAY_DAY, date(1990, 6, 10), None, WEDNESDAY, 250, "on the day"),
        (BIRTHDAY_DAY, date(1990, 6, 11), None, WEDNESDAY, 0, "the day before is not the day"),
        # Paris is UTC+1 in February: 2027-02-27T23:30Z is 28 February 00:30 local.
        (
            BIRTHDAY_DAY,
            date(2000, 2, 29),
            None,
            datetime(2027, 2, 27, 23, 30, tzinfo=UTC),
            250,
            "29 Feb on 28 Feb in a common year",
        ),
        (
            BIRTHDAY_DAY,
            date(2000, 2, 29),
            None,
            datetime(2027, 2, 27, 22, 30, tzinfo=UTC),
            0,
            "27 Feb 23:30 local is not yet",
        ),
        (
            BIRTHDAY_DAY,
            date(2000, 2, 29),
            None,
            datetime(2028, 2, 28, 12, 0, tzinfo=UTC),
            0,
            "2028 has a 29 Feb: not the 28th",
        ),
        (
            BIRTHDAY_DAY,
            date(2000, 2, 29),
            None,
            datetime(2028, 2, 29, 12, 0, tzinfo=UTC),
            250,
            "29 Feb 2028 itself",
        ),
        (
            BIRTHDAY_MONTH,
            date(2000, 2, 29),
            None,
            datetime(2027, 2, 3, 12, 0, tzinfo=UTC),
            250,
            "February, any year",
        ),
    ],
)
def test_birthday_bonus(
    rule: dict[str, Any],
    birthday: date,
    given: date | None,
    instant: datetime,
    bonus: int,
    why: str,
) -> None:
    member = MemberContext(birthday=birthday, last_birthday_bonus_on=given)
    result = earn(ruleset(BASE, rule), order(instant, item("x", None, 1, 1000)), member)
    # 10 base points, plus the bonus when it is due.
    assert result.total == 10 + bonus, why
    assert result.awarded_once == (("birthday",) if bonus else ()), why


def test_no_birthday_known_no_bonus() -> None:
    assert (
        earn(ruleset(BASE, BIRTHDAY_MONTH), order(WEDNESDAY, item("x", None, 1, 1000))).total == 10
    )


CHALLENGE: dict[str, Any] = {
    "kind": "frequency_challenge",
    "id": "three-in-a-month",
    "purchases": 3,
    "points": 200,
    "min_order_amount": spend("10.00"),
}


@pytest.mark.parametrize(
    ("state", "cents", "bonus", "counted", "why"),
    [
        (ChallengeState(purchases=0), 1000, 0, True, "the first of three: counted, no bonus"),
        (ChallengeState(purchases=1), 1000, 0, True, "the second of three"),
        (ChallengeState(purchases=2), 1000, 200, True, "the third purchase earns the 200"),
        (ChallengeState(purchases=2), 999, 0, False, "EUR 9.99 does not qualify, not counted"),
        (ChallengeState(purchases=3, awarded=True), 1000, 0, True, "once a month"),
        (ChallengeState(purchases=5), 1000, 200, True, "past the mark but never awarded"),
    ],
)
def test_frequency_challenge(
    state: ChallengeState, cents: int, bonus: int, counted: bool, why: str
) -> None:
    member = MemberContext(challenges={"three-in-a-month": state})
    result = earn(ruleset(BASE, CHALLENGE), order(WEDNESDAY, item("x", None, 1, cents)), member)
    assert result.total == cents // 100 + bonus, why
    assert result.challenge_purchases == (("three-in-a-month",) if counted else ()), why
    assert result.awarded_once == (("three-in-a-month",) if bonus else ()), why


def test_a_challenge_without_state_starts_at_zero() -> None:
    result = earn(
        ruleset(BASE, {**CHALLENGE, "purchases": 1}), order(WEDNESDAY, item("x", None, 1, 1000))
    )
    # One purchase is enough: 10 + 200.
    assert result.total == 210


# --- caps -------------------------------------------------------------------------------------


def test_an_order_cap_hit_exactly_cuts_nothing() -> None:
    rules = ruleset(BASE, {**CAP_500, "max_points": 100})
    result = earn(rules, order(WEDNESDAY, item("x", None, 1, 10000)))
    # EUR 100.00: 100 points, exactly the cap: no cap line.
    assert lines(result) == [("base", 100)]


def test_an_order_cap_cuts_bonuses_too() -> None:
    rules = ruleset(BASE, WELCOME, {**CAP_500, "max_points": 100})
    result = earn(rules, order(WEDNESDAY, item("x", None, 1, 1000)), GOLD)
    # 10 base x1.5 tier = 15 (10 + 5), plus 100 welcome = 115; the cap takes 15 off.
    assert lines(result) == [("base", 10), (None, 5), ("welcome", 100), ("cap-500", -15)]
    assert result.total == 100
    assert result.awarded_once == ("welcome",)  # given, though the cap ate some of it


def test_the_smallest_order_cap_applies() -> None:
    rules = ruleset(
        BASE,
        {**CAP_500, "id": "cap-80", "max_points": 80},
        {**CAP_500, "id": "cap-60", "max_points": 60},
    )
    assert lines(earn(rules, order(WEDNESDAY, item("x", None, 1, 10000)))) == [
        ("base", 100),
        ("cap-60", -40),
    ]


@pytest.mark.parametrize(
    ("earned_today", "expected", "why"),
    [
        (0, 100, "100 of the 300 allowed today"),
        (200, 100, "200 + 100 = 300: exactly at the cap"),
        (250, 50, "only 50 of room left"),
        (300, 0, "the cap is reached: nothing more today"),
        (400, 0, "already beyond the cap (a lower cap since): nothing, never negative"),
    ],
)
def test_daily_cap(earned_today: int, expected: int, why: str) -> None:
    rules = ruleset(BASE, {"kind": "daily_cap", "id": "daily-300", "max_points": 300})
    member = MemberContext(points_earned_today=earned_today)
    result = earn(rules, order(WEDNESDAY, item("x", None, 1, 10000)), member)
    assert result.total == expected, why
    if expected < 100:
        assert result.breakdown[-1].points == expected - 100


def test_order_cap_then_daily_cap() -> None:
    rules = ruleset(
        BASE, {**CAP_500, "max_points": 80}, {"kind": "daily_cap", "id": "daily", "max_points": 100}
    )
    member = MemberContext(points_earned_today=50)
    result = earn(rules, order(WEDNESDAY, item("x", None, 1, 10000)), member)
    # 100 points; the order cap leaves 80 (-20); the day has 100 - 50 = 50 of room left (-30).
    assert lines(result) == [("base", 100), ("cap-500", -20), ("daily", -30)]


def test_a_tier_multiplier_of_one_leaves_no_line() -> None:
    result = earn(
        ruleset(BASE),
        order(WEDNESDAY, item("x", None, 1, 1000)),
        MemberContext(tier_multiplier=Decimal(1)),
    )
    assert lines(result) == [("base", 10)]


# --- the largest amounts ----------------------------------------------------------------------


def test_the_largest_order_stays_exact() -> None:
    result = earn(ruleset(BASE), order(WEDNESDAY, item("x", None, 1, MAX_AMOUNT)))
    assert result.total == MAX_AMOUNT // 100


def test_more_points_than_an_amount_can_hold_is_an_error() -> None:
    rules = ruleset({**BASE, "points_per_unit": "1000"})
    with pytest.raises(EarnOverflow):
        evaluate_earn(rules, order(WEDNESDAY, item("x", None, 1, MAX_AMOUNT)), NOBODY)


# --- apportioning -----------------------------------------------------------------------------


def test_apportion_worked_example() -> None:
    # 29.40 + 9.45 + 0.90 = 39.75 -> 40: floors 29, 9, 0 (38); 2 missing: .90 then .45.
    assert apportion([Decimal("29.40"), Decimal("9.45"), Decimal("0.90")], 40) == [29, 10, 1]


def test_apportion_refuses_an_impossible_total() -> None:
    with pytest.raises(ValueError, match="apportioned"):
        apportion([Decimal("1.5"), Decimal(2)], 5)
    with pytest.raises(ValueError, match="apportioned"):
        apportion([Decimal("1.5")], 0)


# --- validation of rule sets (stored as JSON, accepted over the API) --------------------------


def test_a_rule_set_survives_a_json_round_trip() -> None:
    rules = ruleset(
        BASE,
        NO_GIFT_CARDS,
        COFFEE_X2,
        WEEKEND_X2,
        WELCOME,
        CAP_500,
        NIGHT_OWL,
        CHALLENGE,
        BIRTHDAY_DAY,
    )
    again = RuleSet.model_validate_json(rules.model_dump_json())
    assert again == rules
    assert again.rules[7].kind == "frequency_challenge"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"rules": [BASE, {**BASE, "points_per_unit": "2"}]}, "used twice"),
        ({"timezone": "Mars/Olympus"}, "unknown time zone"),
        ({"timezone": "../../etc/passwd"}, "unknown time zone"),
        ({"multiplier_mode": "sum"}, "stack"),
        ({"version": 0}, "greater than or equal to 1"),
        ({"version": "7"}, "valid integer"),
        ({"rules": [{**COFFEE_X2, "multiplier": 0}]}, "greater than 0"),
        ({"rules": [{**COFFEE_X2, "multiplier": "-1"}]}, "greater than 0"),
        ({"rules": [{**COFFEE_X2, "multiplier": "NaN"}]}, "finite"),
        ({"rules": [{**COFFEE_X2, "multiplier": "Infinity"}]}, "finite"),
        ({"rules": [{**COFFEE_X2, "multiplier": "1.0000001"}]}, "decimal places"),
        ({"rules": [{**COFFEE_X2, "multiplier": "1E+9"}]}, "less than or equal to 1000"),
        ({"rules": [{**BASE, "points_per_unit": "-0.5"}]}, "greater than or equal to 0"),
        ({"rules": [{**COFFEE_X2, "categories": []}]}, "at least one category or SKU"),
        ({"rules": [{**BASE, "min_order_amount": MAX_AMOUNT + 1}]}, "less than or equal to"),
        ({"rules": [{**BASE, "min_order_amount": 10.0}]}, "valid integer"),
        ({"rules": [{**WELCOME, "points": -1}]}, "greater than or equal to 0"),
        ({"rules": [{**BASE, "kind": "cashback"}]}, "does not match any of the expected tags"),
        ({"rules": [{**BASE, "colour": "red"}]}, "Extra inputs"),
        ({"rules": [{**BASE, "id": "has space"}]}, "pattern"),
        ({"rules": [{**BASE, "channels": []}]}, "at least one"),
        ({"rules": [{**BASE, "channels": ["web", "web"]}]}, "repeated"),
        ({"rules": [{**BASE, "channels": ["fax"]}]}, "web"),
        ({"rules": [{**BASE, "stores": ["a\x00b"]}]}, "control characters"),
        ({"rules": [{**BASE, "description": "a\x00b"}]}, "NUL"),
        (
            {
                "rules": [
                    {**WEEKEND_X2, "window": {"starts_on": "2026-06-08", "ends_on": "2026-06-07"}}
                ]
            },
            "after ends_on",
        ),
        (
            {
                "rules": [
                    {
                        **WEEKEND_X2,
                        "window": {
                            **WEEKEND_X2["window"],
                            "from_time": "22:00",
                            "until_time": "02:00",
                        },
                    }
                ]
            },
            "before until_time",
        ),
        (
            {
                "rules": [
                    {**WEEKEND_X2, "window": {**WEEKEND_X2["window"], "from_time": "09:00+02:00"}}
                ]
            },
            "time of day",
        ),
        (
            {"rules": [{**WEEKEND_X2, "window": {**WEEKEND_X2["window"], "from_time": 3600}}]},
            "time of day",
        ),
        (
            {
                "rules": [
                    {**WEEKEND_X2, "window": {**WEEKEND_X2["window"], "starts_on": 1767225600}}
                ]
            },
            "ISO 8601",
        ),
        (
            {
                "rules": [
                    {**WEEKEND_X2, "window": {**WEEKEND_X2["window"], "weekdays": ["sat", "sat"]}}
                ]
            },
            "repeated",
        ),
        ({"rules": [{**WEEKEND_X2, "window": {"weekdays": ["sat"]}}]}, "campaign needs"),
        ({"rules": [{**WEEKEND_X2, "window": None}]}, "valid dictionary"),
        ({"rules": [{**CHALLENGE, "purchases": 0}]}, "greater than or equal to 1"),
    ],
)
def test_invalid_rule_sets_are_refused(change: dict[str, Any], message: str) -> None:
    document = {"version": 1, "timezone": PARIS, "rules": [BASE], **change}
    with pytest.raises(ValidationError, match=message):
        RuleSet.model_validate(document)


def test_orders_must_be_valid() -> None:
    good = {"occurred_at": "2026-06-10T10:00:00+02:00", "channel": "web", "currency_exponent": 2}
    assert Order.model_validate(good).occurred_at == WEDNESDAY
    with pytest.raises(ValidationError, match="timezone"):
        Order.model_validate({**good, "occurred_at": "2026-06-10T10:00:00"})
    with pytest.raises(ValidationError, match="quantity x unit_price"):
        Order.model_validate(
            {**good, "items": [{"sku": "x", "quantity": 2, "unit_price": MAX_AMOUNT}]}
        )
    with pytest.raises(ValidationError, match="order total"):
        big = {"sku": "x", "quantity": 1, "unit_price": MAX_AMOUNT}
        Order.model_validate({**good, "items": [big, big]})
    with pytest.raises(ValidationError, match="greater than or equal to 1"):
        Order.model_validate({**good, "items": [{"sku": "x", "quantity": 0, "unit_price": 1}]})
    with pytest.raises(ValidationError, match="Extra inputs"):
        Order.model_validate({**good, "coupon": "FREE"})


def test_a_window_may_leave_out_either_end_of_the_day() -> None:
    evening = {**WEEKEND_X2, "window": {**WEEKEND_X2["window"], "from_time": "18:00"}}
    rules = ruleset(BASE, evening)
    assert rules.rules[1].window is not None
    assert rules.rules[1].window.from_time == time(18, 0)
    # Saturday 18:00 Paris = 16:00Z: in; 17:59 Paris = 15:59Z: out.
    assert (
        earn(rules, order(datetime(2026, 6, 6, 16, 0, tzinfo=UTC), item("x", None, 1, 1000))).total
        == 20
    )
    assert (
        earn(rules, order(datetime(2026, 6, 6, 15, 59, tzinfo=UTC), item("x", None, 1, 1000))).total
        == 10
    )


# --- properties -------------------------------------------------------------------------------

CATEGORIES = ["coffee", "book", "gift_card", "sale"]
amounts = st.integers(min_value=0, max_value=10**7)
multipliers = st.decimals(min_value=Decimal("0.5"), max_value=Decimal(5), places=2)
items_strategy = st.lists(
    st.builds(
        OrderItem,
        sku=st.sampled_from(["a", "b", "c", "d"]),
        category=st.sampled_from([*CATEGORIES, None]),
        quantity=st.integers(min_value=1, max_value=5),
        unit_price=amounts,
    ),
    max_size=6,
)


@st.composite
def rule_sets(draw: st.DrawFn, *, at_least_one: bool = False) -> RuleSet:
    rules: list[dict[str, Any]] = [
        {
            "kind": "base_rate",
            "id": "base",
            "points_per_unit": str(draw(st.decimals(min_value=0, max_value=20, places=3))),
            "rounding": draw(st.sampled_from(["floor", "nearest"])),
            "min_order_amount": draw(st.integers(min_value=0, max_value=2000)),
        }
    ]
    for index, category in enumerate(draw(st.lists(st.sampled_from(CATEGORIES), unique=True))):
        rules.append(
            {
                "kind": "item_multiplier",
                "id": f"m{index}",
                "categories": [category],
                "multiplier": str(draw(multipliers)),
            }
        )
    if draw(st.booleans()):
        rules.append(NO_GIFT_CARDS)
    if draw(st.booleans()):
        rules.append({**WEEKEND_X2, "multiplier": str(draw(multipliers))})
    if draw(st.booleans()):
        rules.append({**WELCOME, "points": draw(st.integers(min_value=0, max_value=500))})
    if draw(st.booleans()):
        rules.append({**CHALLENGE, "purchases": draw(st.integers(min_value=1, max_value=3))})
    if draw(st.booleans()):
        rules.append({**CAP_500, "max_points": draw(st.integers(min_value=0, max_value=5000))})
    if draw(st.booleans()):
        rules.append(
            {
                "kind": "daily_cap",
                "id": "daily",
                "max_points": draw(st.integers(min_value=0, max_value=5000)),
            }
        )
    return ruleset(*rules, mode=draw(st.sampled_from(["stack", "best"])))


members = st.builds(
    MemberContext,
    tier_multiplier=st.sampled_from([Decimal(1), Decimal("1.25"), Decimal("1.5"), Decimal(2)]),
    is_first_purchase=st.booleans(),
    challenges=st.fixed_dictionaries(
        {
            "three-in-a-month": st.builds(
                ChallengeState, purchases=st.integers(0, 5), awarded=st.booleans()
            )
        }
    ),
    points_earned_today=st.integers(min_value=0, max_value=6000),
)


@settings(max_examples=300, deadline=None)
@given(rules=rule_sets(), items=items_strategy, member=members, saturday=st.booleans())
def test_breakdown_sums_to_total_and_caps_hold(
    rules: RuleSet, items: list[OrderItem], member: MemberContext, saturday: bool
) -> None:
    result = evaluate_earn(rules, order(SATURDAY if saturday else WEDNESDAY, *items), member)
    assert sum(line.points for line in result.breakdown) == result.total
    assert result.total >= 0
    for rule in rules.rules:
        if rule.kind == "order_cap":
            assert result.total <= rule.max_points
        if rule.kind == "daily_cap":
            assert result.total <= max(0, rule.max_points - member.points_earned_today)


@settings(max_examples=200, deadline=None)
@given(
    cents=amounts,
    rate=st.decimals(min_value=0, max_value=50, places=4),
    exponent=st.integers(min_value=0, max_value=3),
    split=st.integers(min_value=1, max_value=5),
)
def test_a_lone_base_rate_agrees_with_the_simple_rule(
    cents: int, rate: Decimal, exponent: int, split: int
) -> None:
    # However the amount is split into items, the engine earns what base_rate_points says.
    parts = [cents // split] * (split - 1)
    parts.append(cents - sum(parts))
    the_order = order(
        WEDNESDAY,
        *(item(f"s{i}", None, 1, part) for i, part in enumerate(parts)),
        exponent=exponent,
    )
    result = evaluate_earn(ruleset({**BASE, "points_per_unit": str(rate)}), the_order, NOBODY)
    assert result.total == base_rate_points(cents, exponent, rate)


@settings(max_examples=200, deadline=None)
@given(
    items=items_strategy,
    factors=st.lists(st.decimals(min_value=1, max_value=5, places=2), min_size=1, max_size=4),
)
def test_stacking_multipliers_of_at_least_one_never_earns_less_than_the_best(
    items: list[OrderItem], factors: list[Decimal]
) -> None:
    multis = [
        {
            "kind": "item_multiplier",
            "id": f"m{i}",
            "categories": CATEGORIES,
            "multiplier": str(factor),
        }
        for i, factor in enumerate(factors)
    ]
    the_order = order(WEDNESDAY, *items)
    stacked = evaluate_earn(ruleset(BASE, *multis, mode="stack"), the_order, NOBODY)
    best = evaluate_earn(ruleset(BASE, *multis, mode="best"), the_order, NOBODY)
    assert stacked.total >= best.total
