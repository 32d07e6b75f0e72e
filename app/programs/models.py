"""What a request needs to know about its program and API key (cached in process)."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum


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
    # ids of the program's points accounts, by kind (issuance, redemption, breakage)
    accounts: dict[str, int]


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
