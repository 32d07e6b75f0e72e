"""Referrals: codes members share, and the checks that keep the bonus honest.

A referral goes through three decisions, each returning a stable reason code:

1. **Link** (`check_link`), when a new member signs up with a code: refused for a
   self-referral -- the same member, or the same e-mail address or phone number once
   normalised -- and when the member already has a referrer (one referrer per member, first
   come, never replaced).
2. **Reward** (`check_reward`), on the referee's qualifying order: refused below the
   program's minimum order amount, when this referral was already rewarded, and when the
   referrer has reached the cap of rewarded referrals for the calendar month of the order.
3. **Clawback** (`check_clawback`), when the qualifying order is refunded: the bonus is taken
   back if the refund comes within the return window *and* leaves the order below the minimum
   (a full refund always does). A refund after the window changes nothing.

Checks run in the order listed in each function; the first that fails is the reason.

Worked example (minimum EUR 20, cap 2 per month, 14-day return window): Ana refers Ben and
Cleo. Ben's EUR 35 order on 3 May is rewarded; Cleo's EUR 15 order is not
(``order_below_minimum``), her EUR 25 order on 9 May is. Dan's order on 20 May finds Ana at
her cap of 2 for May (``referrer_monthly_cap``); his order on 2 June is rewarded. Ben returns
EUR 20 of his order on 10 May: EUR 15 is left, below the minimum, within the window: the
bonus is clawed back (``refunded_in_return_window``).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from pydantic import Field

from app.domain.types import MinorUnits, Points, RuleModel

# Unambiguous on a receipt, a screen or the phone: no 0/O/D/Q, 1/I/L/J, 2/Z, 5/S, 6 (G),
# 8/B, U/V, and no vowels at all, so a random code never spells a word.
ALPHABET = "3479CFGHKMNPRTWXY"
DEFAULT_LENGTH = 8


class ReferralReason(StrEnum):
    OK = "ok"
    SELF_REFERRAL = "self_referral"
    SAME_EMAIL = "self_referral_email"
    SAME_PHONE = "self_referral_phone"
    ALREADY_REFERRED = "already_referred"
    ORDER_BELOW_MINIMUM = "order_below_minimum"
    ALREADY_REWARDED = "already_rewarded"
    MONTHLY_CAP = "referrer_monthly_cap"
    REFUNDED_IN_WINDOW = "refunded_in_return_window"
    REFUNDED_AFTER_WINDOW = "refunded_after_return_window"
    STILL_QUALIFIES = "still_qualifies"


class ReferralPolicy(RuleModel):
    """A program's referral settings."""

    referrer_points: Points = 0
    referee_points: Points = 0
    min_order_amount: MinorUnits = 0
    monthly_cap: int | None = Field(
        default=None, strict=True, ge=1, le=1_000_000, description="rewarded referrals"
    )
    return_window_days: int = Field(default=0, strict=True, ge=0, le=3650)


@dataclass(frozen=True)
class ReferralParty:
    """A member taking part in a referral, with the contact attributes the caller knows."""

    member_id: str
    email: str | None = None
    phone: str | None = None


@dataclass(frozen=True)
class ReferralDecision:
    allowed: bool
    reason: ReferralReason


@dataclass(frozen=True)
class ClawbackDecision:
    clawback: bool
    reason: ReferralReason


# A member's code is a bijection of its id: ((id + OFFSET) x FACTOR) mod 17^8, written in base 17
# over ALPHABET. FACTOR is prime to 17, so the map is invertible and no two members share a
# code; consecutive ids give unrelated-looking codes. Nothing is stored, nothing is retried.
_SPACE = len(ALPHABET) ** DEFAULT_LENGTH  # 17^8 = 6,975,757,441
_OFFSET = 1_234_567
_FACTOR = 4_294_967_291
_INVERSE = pow(_FACTOR, -1, _SPACE)


def code_for(member_id: int) -> str:
    """The referral code of member `member_id` (ids from 1 to 17^8 - OFFSET - 1).

    Worked example: member 1 -> ((1 + 1,234,567) x 4,294,967,291) mod 17^8 = 2,480,947,486,
    whose base-17 digits (6, 0, 13, 5, 8, 1, 6, 7) over "3479CFGHKMNPRTWXY" spell "G3TFK4GH".
    Member 2 gets "YKRCCPX9": the factor scatters neighbours.
    """
    if not 1 <= member_id < _SPACE - _OFFSET:
        raise ValueError("member id out of the referral code range")
    n = ((member_id + _OFFSET) * _FACTOR) % _SPACE
    characters = []
    for _ in range(DEFAULT_LENGTH):
        n, digit = divmod(n, len(ALPHABET))
        characters.append(ALPHABET[digit])
    return "".join(reversed(characters))


def member_id_for(code: str) -> int | None:
    """The member id a code stands for (the inverse of `code_for`), or None if no member of
    the code range could have it. Give it a normalized code (`normalize_code`)."""
    if len(code) != DEFAULT_LENGTH or any(char not in ALPHABET for char in code):
        return None
    n = 0
    for char in code:
        n = n * len(ALPHABET) + ALPHABET.index(char)
    member_id = (n * _INVERSE) % _SPACE - _OFFSET
    return member_id if member_id >= 1 else None


def normalize_code(text: str) -> str | None:
    """A code as typed ("  k7wx-9hcf ") in its canonical form ("K7WX9HCF"), or None if it
    cannot be one of ours."""
    code = re.sub(r"[\s\-]", "", text).upper()
    if not 4 <= len(code) <= 32 or any(char not in ALPHABET for char in code):
        return None
    return code


def normalize_email(email: str) -> str | None:
    """An e-mail address as compared for self-referral: whitespace removed, case folded, and a
    ``+tag`` dropped from the local part: " Ana.Lima+promo@Example.COM " is
    "ana.lima@example.com". Dots are kept (only some providers ignore them). None if it is
    not an address."""
    compact = "".join(email.split()).casefold()
    local, at, domain = compact.rpartition("@")
    local = local.split("+", 1)[0]
    if not at or not local or not domain:
        return None
    return f"{local}@{domain}"


def normalize_phone(phone: str) -> str | None:
    """A phone number as compared for self-referral: spaces and ``-./()`` removed, a leading
    00 read as +: "+33 6 12-34-56-78" and "0033612345678" are both "+33612345678". None if
    what is left is not a number of at least 6 digits."""
    compact = re.sub(r"[\s\-./()]", "", phone)
    if compact.startswith("00"):
        compact = "+" + compact[2:]
    digits = compact.removeprefix("+")
    if not digits.isascii() or not digits.isdigit() or len(digits) < 6:
        return None
    return compact


def _same(first: str | None, second: str | None, normalize: Callable[[str], str | None]) -> bool:
    if first is None or second is None:
        return False
    normalized = normalize(first)
    return normalized is not None and normalized == normalize(second)


def check_link(
    referrer: ReferralParty, referee: ReferralParty, *, referee_referred_by: str | None
) -> ReferralDecision:
    """May `referee` be recorded as referred by `referrer`? `referee_referred_by` is the
    member id of the referee's existing referrer, if any."""
    if referrer.member_id == referee.member_id:
        return ReferralDecision(False, ReferralReason.SELF_REFERRAL)
    if _same(referrer.email, referee.email, normalize_email):
        return ReferralDecision(False, ReferralReason.SAME_EMAIL)
    if _same(referrer.phone, referee.phone, normalize_phone):
        return ReferralDecision(False, ReferralReason.SAME_PHONE)
    if referee_referred_by is not None:
        return ReferralDecision(False, ReferralReason.ALREADY_REFERRED)
    return ReferralDecision(True, ReferralReason.OK)


def check_reward(
    policy: ReferralPolicy,
    *,
    order_amount: int,
    already_rewarded: bool,
    referrer_rewards_this_month: int,
) -> ReferralDecision:
    """Does the referee's order earn the referral bonus? `referrer_rewards_this_month` counts
    the referrer's referrals already rewarded in the program-local calendar month of the
    order (`app.domain.dates.local_date`)."""
    if order_amount < policy.min_order_amount:
        return ReferralDecision(False, ReferralReason.ORDER_BELOW_MINIMUM)
    if already_rewarded:
        return ReferralDecision(False, ReferralReason.ALREADY_REWARDED)
    if policy.monthly_cap is not None and referrer_rewards_this_month >= policy.monthly_cap:
        return ReferralDecision(False, ReferralReason.MONTHLY_CAP)
    return ReferralDecision(True, ReferralReason.OK)


def check_clawback(
    policy: ReferralPolicy,
    *,
    order_occurred_at: datetime,
    order_amount: int,
    refunded_at: datetime,
    refunded_total: int,
) -> ClawbackDecision:
    """Is a rewarded referral taken back after a refund of its qualifying order?

    `refunded_total` is everything refunded on the order so far, this refund included. The
    return window runs `return_window_days` from the order, to the instant: an order at
    3 May 10:00 with 14 days is returnable through 17 May 10:00.
    """
    if refunded_at > order_occurred_at + timedelta(days=policy.return_window_days):
        return ClawbackDecision(False, ReferralReason.REFUNDED_AFTER_WINDOW)
    left = order_amount - refunded_total
    if left <= 0 or left < policy.min_order_amount:
        return ClawbackDecision(True, ReferralReason.REFUNDED_IN_WINDOW)
    return ClawbackDecision(False, ReferralReason.STILL_QUALIFIES)
