"""Background maintenance: release due pending points and expired holds.

The same SQL (`member_maintain`) runs lazily on every read and write of a member, so the worker
only keeps idle members tidy; correctness never depends on it. Several workers may run at
once: each member is claimed with `pg_try_advisory_xact_lock` (the advisory-lock form of
SKIP LOCKED), and a worker that finds a member taken moves on. A crash rolls back the member's
transaction, and the next pass does it again: exactly once either way.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass

import structlog
from sqlalchemy import text

from app.db import Database

log = structlog.get_logger(__name__)

_DUE_MEMBERS = text(
    """
    SELECT program_id, member_id FROM pending_lots WHERE remaining > 0 AND release_at <= now()
    UNION
    SELECT program_id, member_id FROM holds WHERE status = 'open' AND expires_at <= now()
    LIMIT :limit
    """
)
_CLAIM = text("SELECT pg_try_advisory_xact_lock(:member_id)")
_MAINTAIN = text("SELECT member_maintain(:program_id, :member_id)")


@dataclass
class PassResult:
    members: int = 0
    postings: int = 0
    skipped: int = 0


async def run_pass(database: Database, limit: int = 500) -> PassResult:
    """One pass over members with due work; each member in its own short transaction."""
    result = PassResult()
    async with database.engine.connect() as conn:
        due = (await conn.execute(_DUE_MEMBERS, {"limit": limit})).all()
    for program_id, member_id in due:
        async with database.engine.begin() as conn:
            if not await conn.scalar(_CLAIM, {"member_id": member_id}):
                result.skipped += 1
                continue
            done = await conn.scalar(_MAINTAIN, {"program_id": program_id, "member_id": member_id})
        result.members += 1
        result.postings += int(done or 0)
    return result


async def run_forever(database: Database, interval: float, stop: asyncio.Event) -> None:
    while not stop.is_set():
        try:
            outcome = await run_pass(database)
            if outcome.postings:
                log.info("worker_pass", members=outcome.members, postings=outcome.postings)
        except Exception:  # keep the worker alive through a transient database failure
            log.exception("worker_pass_failed")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=interval)
