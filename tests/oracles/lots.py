"""The spending order of lots, written again in Python as a test oracle.

The ledger spends and expires lots in SQL (`app/ledger/sql/`); these functions state the same
rules plainly, so tests can say what the database should have done. They are not used by the
service: each rule has one implementation, and this is the tests' copy.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

_LATEST = datetime.max.replace(tzinfo=UTC)


@dataclass(frozen=True)
class Lot:
    """An earn's points as the expiry rules see them: `remaining` is what is neither spent
    nor expired. `expires_at` None means the lot does not lapse on its own."""

    id: int
    earned_at: datetime
    expires_at: datetime | None
    remaining: int

    def __post_init__(self) -> None:
        if self.remaining < 0:
            raise ValueError(f"lot {self.id}: remaining points must not be negative")
        for moment in (self.earned_at, self.expires_at):
            if moment is not None and moment.utcoffset() is None:
                raise ValueError(f"lot {self.id}: datetimes need a time zone")


@dataclass(frozen=True)
class LotPoints:
    """Points taken from one lot (spent, or expired)."""

    lot_id: int
    points: int


class InsufficientPoints(ValueError):
    """The lots hold fewer points than the redemption asks for."""


def _fifo_key(lot: Lot) -> tuple[bool, datetime, datetime, int]:
    return (lot.expires_at is None, lot.expires_at or _LATEST, lot.earned_at, lot.id)


def fifo_order(lots: Iterable[Lot]) -> list[Lot]:
    """Lots in the order they are spent: soonest `expires_at` first, then the older earn,
    then the lower id; lots that never expire last."""
    listed = list(lots)
    if len({lot.id for lot in listed}) != len(listed):
        raise ValueError("lot ids must be unique")
    return sorted(listed, key=_fifo_key)


def consume_fifo(lots: Sequence[Lot], amount: int) -> tuple[LotPoints, ...]:
    """Which lots a redemption of `amount` points spends, and how much of each.

    Worked example: lot 1 has 100 points expiring 31 Dec 2026, lot 2 has 50 expiring
    30 June 2026, lot 3 has 500 that never expire. Redeeming 120 takes all 50 of lot 2
    (expires first), then 70 of lot 1; lot 3 is untouched. Redeeming 700 of the 650 raises
    `InsufficientPoints` -- nothing is consumed partially.

    Pass the member's open lots only: expire the lots that are due (`due_lots`) before
    spending, or a redemption would spend points that have already lapsed.
    """
    if amount < 0:
        raise ValueError("the amount to consume must not be negative")
    available = sum(lot.remaining for lot in lots)
    if amount > available:
        raise InsufficientPoints(f"{amount} points asked, {available} available")
    taken: list[LotPoints] = []
    left = amount
    for lot in fifo_order(lots):
        if left == 0:
            break
        if lot.remaining == 0:
            continue
        take = min(left, lot.remaining)
        taken.append(LotPoints(lot_id=lot.id, points=take))
        left -= take
    return tuple(taken)


def due_lots(
    lots: Iterable[Lot], now: datetime, *, account_expires_at: datetime | None = None
) -> tuple[LotPoints, ...]:
    """What lapses at `now`: every lot with ``expires_at <= now``, for what is left of it.

    Under ``inactivity`` pass `account_expires_at` (from `inactivity_expires_at`): once it has
    passed, every open lot lapses in full. Spent points are never expired: a lot of 300 points
    of which 220 were spent lapses for 80, and a fully spent lot does not appear.
    """
    if now.utcoffset() is None:
        raise ValueError("now needs a time zone")
    everything = account_expires_at is not None and account_expires_at <= now
    return tuple(
        LotPoints(lot_id=lot.id, points=lot.remaining)
        for lot in fifo_order(lots)
        if lot.remaining > 0
        and (everything or (lot.expires_at is not None and lot.expires_at <= now))
    )
