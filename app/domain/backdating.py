"""Which business times (`occurred_at`) a program accepts."""

from __future__ import annotations

from datetime import datetime, timedelta

# Clocks of tills and phones drift; a few minutes in the future is still "now".
FUTURE_TOLERANCE = timedelta(minutes=5)


def occurred_at_problem(occurred_at: datetime, now: datetime, max_backdate_days: int) -> str | None:
    """Why `occurred_at` is refused, or None if it is accepted.

    POS terminals sync late, so events may be up to `max_backdate_days` old; they may not be
    from the future (beyond a small clock-drift tolerance).
    """
    if occurred_at > now + FUTURE_TOLERANCE:
        return "occurred_at is in the future"
    if occurred_at < now - timedelta(days=max_backdate_days):
        return f"occurred_at is more than {max_backdate_days} days in the past"
    return None
