"""The return window: how long points earned on an order stay pending."""

from __future__ import annotations

from datetime import datetime, timedelta


def return_window_end(occurred_at: datetime, pending_days: int) -> datetime | None:
    """When points earned on an order become spendable, or None if they are at once.

    The window runs from the sale (`occurred_at`, business time), not from when the ledger
    heard of it: a POS sale synced five days late with a 14-day window has nine days left, and
    one synced after its window is spendable at once.
    """
    if pending_days <= 0:
        return None
    return occurred_at + timedelta(days=pending_days)
