"""What a request needs to know about its program and API key (cached in process)."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum

from app.domain.earning import RuleSet
from app.domain.expiry import ExpiryPolicy
from app.domain.referrals import ReferralPolicy
from app.domain.tiers import TierProgram


class Scope(StrEnum):
    EARN = "earn"
    REDEEM = "redeem"
    READ = "read"
    ADMIN = "admin"


@dataclass(frozen=True)
class Program:
    id: int
    slug: str
    name: str
    currency: str
    currency_exponent: int
    base_rate: Decimal
    point_value: Decimal
    max_backdate_days: int
    pending_days: int
    hold_ttl_seconds: int
    return_policy: str
    member_transfers: bool
    # bumped by every change of settings or rules; the engine refuses events computed under
    # another version as stale, so a cached Program is checked by every posting
    version: int
    # IANA time zone: local days for rule windows, caps, tiers and expiry dates
    timezone: str
    # the current version of the earning rules
    rules: RuleSet
    expiry_policy: ExpiryPolicy
    tier_program: TierProgram | None
    referral_policy: ReferralPolicy | None

    @property
    def rules_need_member(self) -> bool:
        """Do earns depend on the member's state (tier, once-only bonuses, challenges, caps per
        day, referrals)? Then an earn reads the member's context first and posts with a
        compare-and-set on the member's version; otherwise the rules see the order alone."""
        return (
            self.tier_program is not None
            or self.referral_policy is not None
            or any(rule.kind in MEMBER_RULE_KINDS for rule in self.rules.rules)
        )


MEMBER_RULE_KINDS = frozenset(
    {"first_purchase_bonus", "birthday_bonus", "frequency_challenge", "daily_cap"}
)


@dataclass(frozen=True)
class ApiKey:
    id: int
    program_id: int
    prefix: str
    scopes: frozenset[str]

    def allows(self, scope: Scope) -> bool:
        """`admin` implies every other scope."""
        return Scope.ADMIN in self.scopes or scope in self.scopes


@dataclass(frozen=True)
class Caller:
    """The authenticated caller of a request: its key and its program."""

    key: ApiKey
    program: Program
