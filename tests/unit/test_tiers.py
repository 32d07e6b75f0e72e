"""Worked examples of tier evaluation (no database).

The programs below are small and round so that every figure can be checked by hand: the
comments derive each expected status from the events.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from app.domain.tiers import (
    EarnedTier,
    Membership,
    Progress,
    QualifyingEvent,
    TierEvaluation,
    TierProgram,
    TierStatus,
    evaluate_tier,
    initial_status,
)

LADDER: list[dict[str, Any]] = [
    {"code": "member", "threshold": 0},
    {"code": "silver", "threshold": 1000, "earn_multiplier": "1.25"},
    {"code": "gold", "threshold": 2500, "earn_multiplier": "1.5"},
]
CALENDAR = TierProgram.model_validate(
    {"metric": "qualifying_points", "period": "calendar_year", "grace_days": 30, "tiers": LADDER}
)
ROLLING = TierProgram.model_validate(
    {"metric": "qualifying_points", "period": "rolling", "rolling_months": 12, "tiers": LADDER}
)
JAN_1 = date(2026, 1, 1)


def events(*pairs: tuple[str, int]) -> list[QualifyingEvent]:
    return [QualifyingEvent(date.fromisoformat(day), amount) for day, amount in pairs]


def evaluate(
    program: TierProgram,
    history: list[QualifyingEvent],
    today: str,
    status: TierStatus | None = None,
    memberships: tuple[Membership, ...] = (),
) -> TierEvaluation:
    start = status or initial_status(program, JAN_1)
    return evaluate_tier(program, history, start, memberships, date.fromisoformat(today))


def held(evaluation: TierEvaluation) -> tuple[str, str, str | None, str]:
    status = evaluation.status
    until = status.guaranteed_until.isoformat() if status.guaranteed_until else None
    return (status.tier, status.since.isoformat(), until, status.reason)


# --- calendar year ----------------------------------------------------------------------------

SILVER_IN_MAY = events(("2026-03-01", 600), ("2026-05-10", 500))


def test_upgrade_mid_period() -> None:
    result = evaluate(CALENDAR, SILVER_IN_MAY, "2026-06-01")
    # 600 + 500 = 1,100 on 10 May reaches Silver (1,000): Silver from that day, guaranteed
    # until the end of the qualification year.
    assert held(result) == ("silver", "2026-05-10", "2026-12-31", "upgraded")
    assert result.status.earned.tier == "silver"
    # Gold needs 2,500 - 1,100 = 1,400 more points this calendar year.
    assert result.next_tier == Progress(
        tier="gold", metric="qualifying_points", current=1100, needed=1400, by=date(2026, 12, 31)
    )
    # Silver is already met for the review of 2026: nothing more needed to keep it.
    assert result.retention is not None
    assert (result.retention.tier, result.retention.needed) == ("silver", 0)


def test_the_day_before_the_threshold_nothing_changes() -> None:
    result = evaluate(CALENDAR, SILVER_IN_MAY, "2026-05-09")
    # Only the March 600 counts by 9 May: still the base tier, 400 short of Silver.
    assert held(result) == ("member", "2026-01-01", None, "initial")
    assert result.next_tier is not None
    assert (result.next_tier.current, result.next_tier.needed) == (600, 400)
    assert result.retention is None


def test_one_purchase_can_skip_a_tier() -> None:
    result = evaluate(CALENDAR, events(("2026-04-04", 2700)), "2026-04-04")
    assert held(result) == ("gold", "2026-04-04", "2026-12-31", "upgraded")
    assert result.next_tier is None  # gold is the top


# The module's worked example: Silver in May, Gold on 10 June, a 400-point refund on 1 July.
GOLD_THEN_REFUND = events(
    ("2026-02-01", 1000), ("2026-05-02", 800), ("2026-06-10", 900), ("2026-07-01", -400)
)


def test_a_refund_does_not_downgrade_before_the_period_ends() -> None:
    result = evaluate(CALENDAR, GOLD_THEN_REFUND, "2026-12-31")
    # 1,000 + 800 = 1,800 (Silver on 1 Feb, when 1,000 was reached); + 900 = 2,700 on 10 June:
    # Gold. The refund leaves 2,300, below Gold, but Gold is guaranteed until 31 December.
    assert held(result) == ("gold", "2026-06-10", "2026-12-31", "upgraded")
    # To keep Gold at the review of 2026: 2,500 - 2,300 = 200 more by 31 December.
    assert result.retention == Progress(
        tier="gold", metric="qualifying_points", current=2300, needed=200, by=date(2026, 12, 31)
    )


def test_the_review_finds_the_refund_and_grants_a_grace() -> None:
    result = evaluate(CALENDAR, GOLD_THEN_REFUND, "2027-01-01")
    # 1 January 2027: the review of 2026 counts 2,300, Silver level. Gold is kept through the
    # 30 days of grace (to 30 January); the downgrade is due on 31 January.
    assert held(result) == ("gold", "2026-06-10", "2026-12-31", "grace")
    assert result.status.downgrade_on == date(2027, 1, 31)
    # To requalify: 2,500 points in the new window (2027 so far: 0) by 30 January.
    assert result.retention == Progress(
        tier="gold", metric="qualifying_points", current=0, needed=2500, by=date(2027, 1, 30)
    )


def test_downgrade_after_the_grace() -> None:
    assert held(evaluate(CALENDAR, GOLD_THEN_REFUND, "2027-01-30"))[3] == "grace"
    result = evaluate(CALENDAR, GOLD_THEN_REFUND, "2027-01-31")
    # Silver from 31 January; Silver was earned in 2026, so it holds through 2027.
    assert held(result) == ("silver", "2027-01-31", "2027-12-31", "downgraded")
    assert result.status.downgrade_on is None


def test_requalifying_during_the_grace() -> None:
    history = [*GOLD_THEN_REFUND, *events(("2027-01-20", 2500))]
    result = evaluate(CALENDAR, history, "2027-02-15")
    # 2,500 points on 20 January 2027 meet Gold in the 2027 window: requalified, guaranteed
    # to the end of 2027, no downgrade.
    assert held(result) == ("gold", "2026-06-10", "2027-12-31", "requalified")
    assert result.status.downgrade_on is None


def test_a_tier_met_again_is_renewed_at_the_review() -> None:
    history = events(("2026-06-10", 2600))
    result = evaluate(CALENDAR, history, "2027-01-01")
    # 2,600 >= 2,500 over 2026: Gold renewed for 2027.
    assert held(result) == ("gold", "2026-06-10", "2027-12-31", "renewed")
    # Nothing earned in 2027: the review of 2027 finds the base tier; 30 days of grace, then
    # the base tier from 31 January 2028, with nothing to guarantee.
    assert evaluate(CALENDAR, history, "2028-01-30").status.downgrade_on == date(2028, 1, 31)
    assert held(evaluate(CALENDAR, history, "2028-01-31")) == (
        "member",
        "2028-01-31",
        None,
        "downgraded",
    )


def test_partial_progress_during_the_grace_softens_the_downgrade() -> None:
    history = [*events(("2026-06-10", 2600)), *events(("2027-05-01", 1200))]
    result = evaluate(CALENDAR, history, "2028-01-31")
    # The review of 2027 finds 1,200: Silver level. Gold ends after the grace, on 31 January
    # 2028, at Silver, guaranteed to the end of 2028.
    assert held(result) == ("silver", "2028-01-31", "2028-12-31", "downgraded")


def test_without_grace_the_downgrade_is_the_day_after_the_period() -> None:
    program = CALENDAR.model_copy(update={"grace_days": 0})
    result = evaluate(program, GOLD_THEN_REFUND, "2027-01-01")
    assert held(result) == ("silver", "2027-01-01", "2027-12-31", "downgraded")


# --- rolling window ---------------------------------------------------------------------------

ROLLING_HISTORY = events(("2025-06-01", 600), ("2026-03-15", 500), ("2026-05-01", 100))


def test_rolling_window_upgrade_and_extension() -> None:
    start = initial_status(ROLLING, date(2025, 6, 1))
    at_march = evaluate(ROLLING, ROLLING_HISTORY, "2026-03-15", start)
    # Window ending 15 March 2026: 16 March 2025 .. 15 March 2026 = 600 + 500 = 1,100: Silver,
    # guaranteed 12 months, to 15 March 2027.
    assert held(at_march) == ("silver", "2026-03-15", "2027-03-15", "upgraded")
    at_may = evaluate(ROLLING, ROLLING_HISTORY, "2026-05-31", start)
    # 1 May 2026: the window (2 May 2025 .. 1 May 2026) holds 1,200, Silver still met: the
    # guarantee now runs 12 months from that purchase.
    assert held(at_may) == ("silver", "2026-03-15", "2027-05-01", "upgraded")
    # On 31 May 2026 the window (1 June 2025 .. 31 May 2026) still holds 1,200. A rolling
    # window has no deadline for the next tier: 2,500 - 1,200 = 1,300 now.
    assert at_may.next_tier == Progress(
        tier="gold", metric="qualifying_points", current=1200, needed=1300, by=None
    )
    # The review of 1 May 2027 counts 2 May 2026 .. 1 May 2027: nothing yet, 1,000 needed.
    assert at_may.retention == Progress(
        tier="silver", metric="qualifying_points", current=0, needed=1000, by=date(2027, 5, 1)
    )


def test_rolling_window_downgrade_at_the_review() -> None:
    start = initial_status(ROLLING, date(2025, 6, 1))
    result = evaluate(ROLLING, ROLLING_HISTORY, "2027-05-02", start)
    # The review of the window ending 1 May 2027 finds 0; no grace: the base tier on 2 May.
    assert held(result) == ("member", "2027-05-02", None, "downgraded")


def test_rolling_window_events_age_out() -> None:
    start = initial_status(ROLLING, date(2025, 6, 1))
    # On 1 June 2026 the window is 2 June 2025 .. 1 June 2026: the purchase of 1 June 2025 has
    # left it, 500 + 100 = 600 count (the day before, 1,200 did).
    result = evaluate(ROLLING, ROLLING_HISTORY, "2026-06-01", start)
    assert result.next_tier is not None and result.next_tier.current == 600


# --- paid memberships -------------------------------------------------------------------------

GOLD_MEMBERSHIP = Membership(tier="gold", starts_on=date(2026, 7, 1), ends_on=date(2026, 9, 30))


def test_a_paid_membership_grants_its_tier_then_falls_back() -> None:
    during = evaluate(CALENDAR, SILVER_IN_MAY, "2026-08-01", memberships=(GOLD_MEMBERSHIP,))
    # Earned Silver in May; the paid Gold runs July to September.
    assert held(during) == ("gold", "2026-07-01", "2026-09-30", "membership")
    assert during.status.earned == EarnedTier(
        tier="silver",
        since=date(2026, 5, 10),
        guaranteed_until=date(2026, 12, 31),
        reason="upgraded",
    )
    after = evaluate(CALENDAR, SILVER_IN_MAY, "2026-10-01", during.status, (GOLD_MEMBERSHIP,))
    # 1 October: back to the earned Silver, still guaranteed to the end of the year.
    assert held(after) == ("silver", "2026-10-01", "2026-12-31", "membership_ended")


def test_earning_the_membership_tier_keeps_it_after_the_membership() -> None:
    history = [*SILVER_IN_MAY, *events(("2026-08-15", 1500))]
    result = evaluate(CALENDAR, history, "2026-10-01", memberships=(GOLD_MEMBERSHIP,))
    # 1,100 + 1,500 = 2,600 on 15 August: Gold earned during the paid Gold; it goes on after.
    assert held(result) == ("gold", "2026-07-01", "2026-12-31", "upgraded")
    assert result.status.earned.tier == "gold"


def test_a_lower_membership_changes_nothing() -> None:
    silver = Membership(tier="silver", starts_on=date(2026, 1, 1), ends_on=date(2026, 12, 31))
    result = evaluate(CALENDAR, events(("2026-04-04", 2700)), "2026-06-01", memberships=(silver,))
    assert held(result) == ("gold", "2026-04-04", "2026-12-31", "upgraded")


def test_back_to_back_memberships_are_one_guarantee() -> None:
    first = Membership(tier="gold", starts_on=date(2026, 1, 1), ends_on=date(2026, 6, 30))
    second = Membership(tier="gold", starts_on=date(2026, 7, 1), ends_on=date(2027, 6, 30))
    result = evaluate(CALENDAR, [], "2026-03-01", memberships=(second, first))
    assert held(result) == ("gold", "2026-01-01", "2027-06-30", "membership")
    # The membership covers the whole grace of a failing review: no downgrade date is shown.
    assert result.status.downgrade_on is None


# --- a hotel chain with five tiers ------------------------------------------------------------

HOTEL = TierProgram.model_validate(
    {
        "metric": "orders",  # one order per night stayed
        "period": "calendar_year",
        "grace_days": 0,
        "tiers": [
            {"code": "member", "threshold": 0},
            {"code": "silver", "threshold": 10},
            {"code": "gold", "threshold": 25},
            {"code": "platinum", "threshold": 50},
            {"code": "diamond", "threshold": 75},
        ],
    }
)
# 12 nights in March, 18 in June (30), 6 cancelled in July (24), 32 in November (56).
GUEST = events(
    *([("2026-03-09", 1)] * 12),
    *([("2026-06-20", 1)] * 18),
    *([("2026-07-04", -1)] * 6),
    *([("2026-11-02", 1)] * 32),
)


@pytest.mark.parametrize(
    ("today", "expected", "why"),
    [
        ("2026-03-08", ("member", "2026-01-01", None, "initial"), "no nights yet"),
        ("2026-03-09", ("silver", "2026-03-09", "2026-12-31", "upgraded"), "12 nights >= 10"),
        ("2026-06-20", ("gold", "2026-06-20", "2026-12-31", "upgraded"), "30 nights >= 25"),
        (
            "2026-07-04",
            ("gold", "2026-06-20", "2026-12-31", "upgraded"),
            "24 after the cancellations: kept",
        ),
        ("2026-11-02", ("platinum", "2026-11-02", "2026-12-31", "upgraded"), "24 + 32 = 56 >= 50"),
        ("2027-01-01", ("platinum", "2026-11-02", "2027-12-31", "renewed"), "2026 ended at 56"),
        ("2028-01-01", ("member", "2028-01-01", None, "downgraded"), "no nights in 2027"),
    ],
)
def test_a_hotel_guest_s_year(
    today: str, expected: tuple[str, str, str | None, str], why: str
) -> None:
    assert held(evaluate(HOTEL, GUEST, today)) == expected, why


def test_the_hotel_guest_s_progress_to_diamond() -> None:
    result = evaluate(HOTEL, GUEST, "2026-11-30")
    assert result.next_tier is not None
    # 75 - 56 = 19 nights to Diamond before the year ends.
    assert result.next_tier.summary() == "19 more orders by 2026-12-31 for diamond"


def test_progress_summaries() -> None:
    progress = Progress(
        tier="gold", metric="qualifying_points", current=2080, needed=420, by=date(2027, 3, 31)
    )
    assert progress.summary() == "420 more qualifying points by 2027-03-31 for gold"
    one = Progress(tier="silver", metric="orders", current=9, needed=1, by=None)
    assert one.summary() == "1 more order for silver"


# --- evaluating often or rarely gives the same answer -----------------------------------------


def test_daily_evaluation_equals_one_evaluation() -> None:
    history = [*GOLD_THEN_REFUND, *events(("2027-03-03", 1200), ("2028-02-01", 3000))]
    memberships = (GOLD_MEMBERSHIP,)
    status = initial_status(CALENDAR, JAN_1)
    day = JAN_1
    while day <= date(2028, 12, 31):
        status = evaluate_tier(CALENDAR, history, status, memberships, day).status
        day += timedelta(days=1)
    once = evaluate_tier(
        CALENDAR, history, initial_status(CALENDAR, JAN_1), memberships, date(2028, 12, 31)
    )
    assert status == once.status


event_lists = st.lists(
    st.builds(
        QualifyingEvent,
        occurred_on=st.dates(min_value=date(2026, 1, 1), max_value=date(2027, 12, 31)),
        amount=st.integers(min_value=-400, max_value=1500),
    ),
    max_size=12,
)
membership_lists = st.lists(
    st.builds(
        lambda tier, start, days: Membership(
            tier=tier, starts_on=start, ends_on=start + timedelta(days=days)
        ),
        st.sampled_from(["silver", "gold"]),
        st.dates(min_value=date(2026, 1, 1), max_value=date(2027, 12, 31)),
        st.integers(min_value=0, max_value=200),
    ),
    max_size=2,
)


@settings(max_examples=60, deadline=None)
@given(
    history=event_lists,
    memberships=membership_lists,
    program=st.sampled_from([CALENDAR, ROLLING, CALENDAR.model_copy(update={"grace_days": 0})]),
    checkpoints=st.lists(st.integers(min_value=1, max_value=900), max_size=8),
)
def test_the_answer_does_not_depend_on_when_it_was_asked(
    history: list[QualifyingEvent],
    memberships: list[Membership],
    program: TierProgram,
    checkpoints: list[int],
) -> None:
    last = date(2028, 6, 30)
    status = initial_status(program, JAN_1)
    for offset in sorted(set(checkpoints)):
        status = evaluate_tier(
            program, history, status, memberships, JAN_1 + timedelta(days=offset)
        ).status
    stepped = evaluate_tier(program, history, status, memberships, last).status
    once = evaluate_tier(program, history, initial_status(program, JAN_1), memberships, last).status
    assert stepped == once
    # The member never holds less than the earned tier, nor less than an active membership.
    ranks = {tier.code: index for index, tier in enumerate(program.tiers)}
    assert ranks[once.tier] >= ranks[once.earned.tier]
    for membership in memberships:
        if membership.starts_on <= last <= membership.ends_on:
            assert ranks[once.tier] >= ranks[membership.tier]


# --- validation -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"tiers": [{"code": "a", "threshold": 5}]}, "threshold must be 0"),
        ({"tiers": [*LADDER[:2], {"code": "gold", "threshold": 1000}]}, "increase strictly"),
        ({"tiers": [*LADDER, {"code": "gold", "threshold": 9000}]}, "unique"),
        ({"tiers": []}, "at least 1 item"),
        ({"period": "rolling"}, "rolling_months is required"),
        ({"rolling_months": 12}, "rolling_months is required"),
        ({"grace_days": -1}, "greater than or equal to 0"),
        ({"metric": "nights"}, "qualifying_points"),
        ({"tiers": [{**LADDER[0], "earn_multiplier": "NaN"}]}, "finite"),
    ],
)
def test_invalid_tier_programs_are_refused(change: dict[str, Any], message: str) -> None:
    document = {"metric": "spend", "period": "calendar_year", "tiers": LADDER, **change}
    with pytest.raises(ValidationError, match=message):
        TierProgram.model_validate(document)


def test_unknown_tiers_and_dates_out_of_order_are_errors() -> None:
    start = initial_status(CALENDAR, JAN_1)
    with pytest.raises(ValueError, match="unknown tier"):
        evaluate_tier(
            CALENDAR, [], start, [Membership(tier="bronze", starts_on=JAN_1, ends_on=JAN_1)], JAN_1
        )
    with pytest.raises(ValueError, match="before the status"):
        evaluate_tier(CALENDAR, [], start, [], date(2025, 12, 31))
    with pytest.raises(ValidationError, match="starts_on is after ends_on"):
        Membership(tier="gold", starts_on=date(2026, 2, 1), ends_on=JAN_1)
    with pytest.raises(ValidationError, match="before since"):
        EarnedTier(tier="gold", since=date(2026, 2, 1), guaranteed_until=JAN_1)
