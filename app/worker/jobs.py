"""Background maintenance: release due pending points and expired holds, expire due points.

The same SQL (`ledger_maintain`) runs lazily on every read and write of a member, so the worker
only keeps idle members tidy; correctness never depends on it. Several workers may run at
once: members are claimed with `FOR NO KEY UPDATE SKIP LOCKED` (the member row is the member's
lock, the one every posting takes), and a worker that finds a member taken moves on. A crash
rolls back the batch's transaction, and the next pass does it again: exactly once either way.

Expiry (see app.domain.expiry): a lot past its `expires_at` lapses for what is left of it in one
`expire` posting (member available -> program breakage) with a system key that a unique index
admits once per program; under the inactivity policy the whole available balance lapses once
the member's deadline (`inactive_at`) has passed. Points already spent never expire: only
`remaining` does. Every query names its program.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass

import asyncpg
import structlog

from app import errors
from app.db import Database

log = structlog.get_logger(__name__)

# Members with due work in one program, from the indexes of what falls due.
_DUE_MEMBERS = """
    SELECT member_id FROM pending_lots
     WHERE program_id = $1 AND remaining > 0 AND release_at <= now()
    UNION
    SELECT member_id FROM holds WHERE program_id = $1 AND status = 'open' AND expires_at <= now()
    UNION
    SELECT member_id FROM lots WHERE program_id = $1 AND remaining > 0 AND expires_at <= now()
    UNION
    SELECT m.id FROM members m
     WHERE m.program_id = $1 AND m.inactive_at <= now()
       AND EXISTS (SELECT 1 FROM lots l WHERE l.program_id = $1 AND l.member_id = m.id
                      AND l.remaining > 0)
    LIMIT $2
"""
_CLAIM = """
    SELECT array_agg(id ORDER BY id) FROM (
        SELECT id FROM members WHERE program_id = $1 AND id = ANY ($2::bigint[])
         ORDER BY id
           FOR NO KEY UPDATE SKIP LOCKED) claimed
"""


@dataclass
class PassResult:
    members: int = 0
    postings: int = 0
    skipped: int = 0
    failed: int = 0


async def run_pass(database: Database, limit: int = 500) -> PassResult:
    """One pass over each program's members with due work, in batches of `limit` members
    (each batch one short transaction)."""
    result = PassResult()
    async with database.single() as db:
        programs = [row["id"] for row in await db.fetch("SELECT id FROM programs ORDER BY id")]
    for program_id in programs:
        async with database.single() as db:
            due = [row["member_id"] for row in await db.fetch(_DUE_MEMBERS, program_id, limit)]
        if not due:
            continue
        try:
            async with database.transaction() as tx:
                claimed: list[int] = await tx.fetchval(_CLAIM, program_id, due) or []
                done = await tx.fetchval(
                    "SELECT ledger_maintain($1, $2::bigint[], true)", program_id, claimed
                )
        except (asyncpg.PostgresError, errors.ApiError) as exc:
            # One program's failure (rolled back) must not stop the others.
            log.error("worker_batch_failed", program_id=program_id, error=str(exc))
            result.failed += len(due)
            continue
        result.members += len(claimed)
        result.skipped += len(due) - len(claimed)
        result.postings += int(done or 0)
    return result


async def run_forever(database: Database, interval: float, stop: asyncio.Event) -> None:
    while not stop.is_set():
        try:
            outcome = await run_pass(database)
            if outcome.postings or outcome.failed:
                log.info(
                    "worker_pass",
                    members=outcome.members,
                    postings=outcome.postings,
                    failed=outcome.failed,
                )
        except Exception:  # keep the worker alive through a transient database failure
            log.exception("worker_pass_failed")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=interval)
