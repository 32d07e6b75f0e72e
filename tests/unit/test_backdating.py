"""Which business times a program accepts (no database)."""

from datetime import UTC, datetime, timedelta

from app.domain.backdating import FUTURE_TOLERANCE, occurred_at_problem

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def test_now_and_recent_past_are_accepted() -> None:
    assert occurred_at_problem(NOW, NOW, 30) is None
    assert occurred_at_problem(NOW - timedelta(days=30), NOW, 30) is None


def test_older_than_the_window_is_refused() -> None:
    problem = occurred_at_problem(NOW - timedelta(days=30, seconds=1), NOW, 30)
    assert problem == "occurred_at is more than 30 days in the past"


def test_future_beyond_clock_drift_is_refused() -> None:
    assert occurred_at_problem(NOW + FUTURE_TOLERANCE, NOW, 30) is None
    assert occurred_at_problem(NOW + FUTURE_TOLERANCE + timedelta(seconds=1), NOW, 30) == (
        "occurred_at is in the future"
    )
