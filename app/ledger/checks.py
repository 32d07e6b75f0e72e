"""The registry of what `verify` checks and what `rebuild` recomputes.

The ledger's own invariants are checked by app.ledger.verify. A feature whose projection the
ledger cannot check in SQL alone (tier status, evaluated by the Python rules) registers a
check and a rebuild here, from its own `checks` module; the ledger never imports a feature.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from app.db import Database, Session

CheckRun = Callable[[Session, int], Awaitable[list[dict[str, Any]]]]
Rebuild = Callable[[Database], Awaitable[int]]


@dataclass(frozen=True)
class FeatureCheck:
    """A check of a feature's projection: `run(db, sample)` returns at most `sample` offending
    rows (inside verify's one REPEATABLE READ snapshot)."""

    name: str
    description: str
    run: CheckRun


_checks: dict[str, FeatureCheck] = {}
_rebuilds: dict[str, Rebuild] = {}


def register_check(check: FeatureCheck) -> None:
    _checks[check.name] = check


def register_rebuild(name: str, rebuild: Rebuild) -> None:
    """`rebuild` recomputes a projection from the ledger; it returns the rows it corrected."""
    _rebuilds[name] = rebuild


def feature_checks() -> list[FeatureCheck]:
    return list(_checks.values())


def feature_rebuilds() -> list[Rebuild]:
    return list(_rebuilds.values())
