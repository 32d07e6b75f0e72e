"""One posting outside the engine: `ledger_post`, typed, under the members' locks.

Referral bonuses and their clawbacks are decided in Python (the amounts, debt repaid first,
what is written off) and posted here, as one balanced transaction whose legs name accounts of
the members this unit of work has locked (app.db.MemberLocks). The SQL function writes it
through the one writer of the ledger (ledger_write): balances, lots, member state.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Annotated, Any

from app.db import MemberLocks
from app.sqlcall import SqlFunction, SqlType

Ids = Annotated[list[int], SqlType("bigint[]")]


@dataclass(frozen=True)
class Posting:
    """The arguments of `ledger_post` (app/ledger/sql/ledger_post.sql)."""

    program_id: int
    kind: str
    member_id: int | None
    occurred_at: datetime
    account_ids: Ids
    amounts: Ids
    order_id: str | None = None
    reason: str | None = None
    metadata: dict[str, Any] | None = None
    key: str | None = None
    # the local day its qualifying credit counts on (member_days)
    day: date | None = None
    # when the lot a credit to available points makes lapses (the program's expiry policy)
    lot_expires_at: datetime | None = None
    take_order: str | None = None
    spending: bool = False


_POST = SqlFunction("ledger_post", Posting)


async def post(locks: MemberLocks, posting: Posting) -> int:
    """Post `posting`; every member whose accounts it names must be locked by `locks`."""
    rows = await _POST.call(locks, posting)
    transaction_id: int = rows[0][0]
    return transaction_id
