"""Worked examples of referral codes and abuse checks (no database)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from app.domain.referrals import (
    ALPHABET,
    ClawbackDecision,
    ReferralDecision,
    ReferralParty,
    ReferralPolicy,
    ReferralReason,
    check_clawback,
    check_link,
    check_reward,
    code_for,
    member_id_for,
    normalize_code,
    normalize_email,
    normalize_phone,
)

# Minimum EUR 20 (2000 cents), at most 2 rewarded referrals per referrer per month, 14 days
# to return an order.
POLICY = ReferralPolicy(
    referrer_points=500,
    referee_points=250,
    min_order_amount=2000,
    monthly_cap=2,
    return_window_days=14,
)
ANA = ReferralParty("ana", email="Ana.Lima@example.com", phone="+33 6 12 34 56 78")
BEN = ReferralParty("ben", email="ben@example.com", phone="+33 6 98 76 54 32")


# --- codes ------------------------------------------------------------------------------------


def test_the_alphabet_has_no_lookalikes() -> None:
    for confusable in "0OQD1ILJ2Z5S8BUV6AEIOU":
        assert confusable not in ALPHABET
    assert len(set(ALPHABET)) == len(ALPHABET) == 17


def test_a_code_is_a_function_of_the_member_id() -> None:
    # ((1 + 1,234,567) x 4,294,967,291) mod 17^8 = 2,480,947,486 = base 17 digits
    # (6, 0, 13, 5, 8, 1, 6, 7) over the alphabet: G3TFK4GH
    assert code_for(1) == "G3TFK4GH"
    assert code_for(2) == "YKRCCPX9"  # neighbours look unrelated
    assert code_for(1) == code_for(1)


@given(st.integers(min_value=1, max_value=5_000_000_000))
def test_a_code_leads_back_to_its_member(member_id: int) -> None:
    code = code_for(member_id)
    assert len(code) == 8 and set(code) <= set(ALPHABET)
    assert member_id_for(code) == member_id


def test_codes_no_member_could_have_are_unknown() -> None:
    assert member_id_for("3333") is None  # not 8 characters
    assert member_id_for("G3TFK4G0") is None  # not the alphabet
    with pytest.raises(ValueError, match="range"):
        code_for(0)


@pytest.mark.parametrize(
    ("typed", "expected"),
    [
        ("  k7wx-9hcf ", "K7WX9HCF"),
        ("K7WX 9HCF", "K7WX9HCF"),
        ("K0WX9HCF", None),  # a zero is never part of a code
        ("K7W", None),  # too short
        ("", None),
    ],
)
def test_normalize_code(typed: str, expected: str | None) -> None:
    assert normalize_code(typed) == expected


@given(st.integers(min_value=1, max_value=5_000_000_000))
def test_every_code_normalizes_to_itself(member_id: int) -> None:
    code = code_for(member_id)
    assert normalize_code(code) == code
    assert normalize_code(code.lower()) == code


# --- normalising contact attributes -------------------------------------------------------------


@pytest.mark.parametrize(
    ("email", "expected"),
    [
        (" Ana.Lima+promo@Example.COM ", "ana.lima@example.com"),
        ("ana.lima@example.com", "ana.lima@example.com"),
        ("ana.lima+a+b@example.com", "ana.lima@example.com"),
        ("ANA.LIMA@EXAMPLE.COM", "ana.lima@example.com"),
        ("a na@example.com", "ana@example.com"),
        ("+tag@example.com", None),
        ("not-an-address", None),
        ("ana@", None),
    ],
)
def test_normalize_email(email: str, expected: str | None) -> None:
    assert normalize_email(email) == expected


@pytest.mark.parametrize(
    ("phone", "expected"),
    [
        ("+33 6 12 34 56 78", "+33612345678"),
        ("0033612345678", "+33612345678"),
        ("+33 (6) 12-34-56.78", "+33612345678"),
        ("06 12 34 56 78", "0612345678"),
        ("12345", None),
        ("call me", None),
        ("+33 6 12 34 56 7٨", None),  # an Arabic-Indic digit is not an ASCII number
    ],
)
def test_normalize_phone(phone: str, expected: str | None) -> None:
    assert normalize_phone(phone) == expected


# --- linking a referee to a referrer ------------------------------------------------------------


@pytest.mark.parametrize(
    ("referee", "referred_by", "reason"),
    [
        (BEN, None, ReferralReason.OK),
        (ReferralParty("ana"), None, ReferralReason.SELF_REFERRAL),
        (
            ReferralParty("ana-2", email=" ana.lima+second@EXAMPLE.com"),
            None,
            ReferralReason.SAME_EMAIL,
        ),
        (ReferralParty("ana-3", phone="0033612345678"), None, ReferralReason.SAME_PHONE),
        (BEN, "cleo", ReferralReason.ALREADY_REFERRED),
        (BEN, "ana", ReferralReason.ALREADY_REFERRED),
        # Self-referral is the reason even when the member already has a referrer.
        (ReferralParty("ana"), "cleo", ReferralReason.SELF_REFERRAL),
        # Unusable attributes are not evidence of anything.
        (ReferralParty("dan", email="not-an-address", phone="n/a"), None, ReferralReason.OK),
    ],
)
def test_check_link(
    referee: ReferralParty, referred_by: str | None, reason: ReferralReason
) -> None:
    decision = check_link(ANA, referee, referee_referred_by=referred_by)
    assert decision == ReferralDecision(reason is ReferralReason.OK, reason)


def test_reason_codes_are_stable_strings() -> None:
    # The API exposes these; renaming one is a breaking change.
    assert [reason.value for reason in ReferralReason] == [
        "ok",
        "self_referral",
        "self_referral_email",
        "self_referral_phone",
        "already_referred",
        "order_below_minimum",
        "already_rewarded",
        "referrer_monthly_cap",
        "refunded_in_return_window",
        "refunded_after_return_window",
        "still_qualifies",
    ]


# --- rewarding the qualifying order --------------------------------------------------------------


@pytest.mark.parametrize(
    ("amount", "rewarded", "this_month", "reason", "why"),
    [
        (3500, False, 0, ReferralReason.OK, "EUR 35, the referrer's first this month"),
        (2000, False, 1, ReferralReason.OK, "exactly the EUR 20 minimum; second of two"),
        (1999, False, 0, ReferralReason.ORDER_BELOW_MINIMUM, "one cent short"),
        (2500, False, 2, ReferralReason.MONTHLY_CAP, "the referrer has had 2 this month"),
        (2500, True, 0, ReferralReason.ALREADY_REWARDED, "this referral was rewarded before"),
    ],
)
def test_check_reward(
    amount: int, rewarded: bool, this_month: int, reason: ReferralReason, why: str
) -> None:
    decision = check_reward(
        POLICY,
        order_amount=amount,
        already_rewarded=rewarded,
        referrer_rewards_this_month=this_month,
    )
    assert decision == ReferralDecision(reason is ReferralReason.OK, reason), why


def test_without_a_cap_there_is_no_monthly_limit() -> None:
    uncapped = POLICY.model_copy(update={"monthly_cap": None})
    decision = check_reward(
        uncapped, order_amount=2000, already_rewarded=False, referrer_rewards_this_month=10_000
    )
    assert decision.allowed


# --- clawback -----------------------------------------------------------------------------------

ORDER_AT = datetime(2026, 5, 3, 10, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("refunded_after", "refunded_total", "reason", "why"),
    [
        (timedelta(days=7), 3500, ReferralReason.REFUNDED_IN_WINDOW, "fully refunded after a week"),
        (timedelta(days=7), 2000, ReferralReason.REFUNDED_IN_WINDOW, "EUR 15 left, below EUR 20"),
        (timedelta(days=7), 1500, ReferralReason.STILL_QUALIFIES, "EUR 20 left: still qualifies"),
        (timedelta(days=14), 3500, ReferralReason.REFUNDED_IN_WINDOW, "the window's last instant"),
        (
            timedelta(days=14, seconds=1),
            3500,
            ReferralReason.REFUNDED_AFTER_WINDOW,
            "a second late",
        ),
    ],
)
def test_check_clawback(
    refunded_after: timedelta, refunded_total: int, reason: ReferralReason, why: str
) -> None:
    decision = check_clawback(
        POLICY,
        order_occurred_at=ORDER_AT,
        order_amount=3500,
        refunded_at=ORDER_AT + refunded_after,
        refunded_total=refunded_total,
    )
    assert decision == ClawbackDecision(reason is ReferralReason.REFUNDED_IN_WINDOW, reason), why


def test_the_module_s_worked_example() -> None:
    # Ana refers Ben and Cleo; May: Ben's EUR 35 order is rewarded (Ana's first in May).
    assert check_reward(
        POLICY, order_amount=3500, already_rewarded=False, referrer_rewards_this_month=0
    ).allowed
    # Cleo's EUR 15 order is below the minimum; her EUR 25 order is Ana's second in May.
    assert (
        check_reward(
            POLICY, order_amount=1500, already_rewarded=False, referrer_rewards_this_month=1
        ).reason
        == ReferralReason.ORDER_BELOW_MINIMUM
    )
    assert check_reward(
        POLICY, order_amount=2500, already_rewarded=False, referrer_rewards_this_month=1
    ).allowed
    # Dan's order on 20 May: Ana has 2 already in May. On 2 June the month starts over.
    assert (
        check_reward(
            POLICY, order_amount=2500, already_rewarded=False, referrer_rewards_this_month=2
        ).reason
        == ReferralReason.MONTHLY_CAP
    )
    assert check_reward(
        POLICY, order_amount=2500, already_rewarded=False, referrer_rewards_this_month=0
    ).allowed
    # Ben returns EUR 20 of his EUR 35 on 10 May: EUR 15 left, within 14 days: clawed back.
    clawback = check_clawback(
        POLICY,
        order_occurred_at=ORDER_AT,
        order_amount=3500,
        refunded_at=datetime(2026, 5, 10, tzinfo=UTC),
        refunded_total=2000,
    )
    assert clawback == ClawbackDecision(True, ReferralReason.REFUNDED_IN_WINDOW)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"monthly_cap": 0}, "greater than or equal to 1"),
        ({"min_order_amount": -1}, "greater than or equal to 0"),
        ({"return_window_days": "14"}, "valid integer"),
        ({"bonus": 5}, "Extra inputs"),
    ],
)
def test_invalid_policies_are_refused(change: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        ReferralPolicy.model_validate(change)
