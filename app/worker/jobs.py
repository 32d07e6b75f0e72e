"""Background maintenance: release due pending points and expired holds, expire due points.

The same SQL (`member_maintain`) runs lazily on every read and write of a member, so the worker
only keeps idle members tidy; correctness never depends on it. Several workers may run at
once: each member is claimed with `pg_try_advisory_xact_lock` (the advisory-lock form of
SKIP LOCKED), and a worker that finds a member taken moves on. A crash rolls back the member's
transaction, and the next pass does it again: exactly once either way.

Expiry (see app.rules.expiry): a lot past its `expires_at` lapses for what is left of it in one
`expire` posting (member available -> program breakage) keyed `expire:<lot id>`, which a unique
index admits once per program; the lot's `remaining` drops to zero in the same transaction, so
a second worker, or the lazy path of a request, finds nothing left to expire. Under the
inactivity policy the whole available balance lapses once the member's last earn or redemption
is older than the policy allows. Points already spent are never expired: only `remaining` is.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass

import structlog
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from app.db import Database

log = structlog.get_logger(__name__)

# Members with due work: pending points past their return window, holds past their expiry,
# lots past their expiry date, and -- under the inactivity policy -- points of members whose
# last earn or redemption is older than the policy allows. The inactivity branch first keeps
# the members with points and no activity in the last N months (less two days, a margin for
# time zones and short months, so nobody due is missed; an index probe of
# transactions_member_activity each), then asks member_inactivity_deadline, the function
# member_maintain itself uses, so a member is listed exactly when maintenance has work to do.
_DUE_MEMBERS = text(
    """
    SELECT program_id, member_id FROM pending_lots WHERE remaining > 0 AND release_at <= now()
    UNION
    SELECT program_id, member_id FROM holds WHERE status = 'open' AND expires_at <= now()
    UNION
    SELECT program_id, member_id FROM lots WHERE remaining > 0 AND expires_at <= now()
    UNION
    SELECT a.program_id, a.member_id
      FROM programs p
      JOIN accounts a ON a.program_id = p.id AND a.member_id IS NOT NULL
                     AND a.asset = 'points' AND a.kind = 'available' AND a.balance > 0
     WHERE p.expiry_policy ->> 'kind' = 'inactivity'
       AND NOT EXISTS (
           SELECT 1 FROM transactions t
            WHERE t.member_id = a.member_id AND t.kind IN ('earn', 'redeem')
              AND t.occurred_at > now() - make_interval(
                      months => (p.expiry_policy ->> 'months')::int) + interval '2 days')
       AND member_inactivity_deadline(a.program_id, a.member_id) <= now()
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
    failed: int = 0


async def run_pass(database: Database, limit: int = 500) -> PassResult:
    """One pass over members with due work; each member in its own short transaction."""
    result = PassResult()
    async with database.engine.connect() as conn:
        due = (await conn.execute(_DUE_MEMBERS, {"limit": limit})).all()
    for program_id, member_id in due:
        try:
            async with database.engine.begin() as conn:
                if not await conn.scalar(_CLAIM, {"member_id": member_id}):
                    result.skipped += 1
                    continue
                done = await conn.scalar(
                    _MAINTAIN, {"program_id": program_id, "member_id": member_id}
                )
        except DBAPIError as exc:
            if exc.connection_invalidated:
                raise
            # One member's failure (rolled back) must not stop the others behind it.
            log.error(
                "worker_member_failed",
                program_id=program_id,
                member_id=member_id,
                error=str(exc.orig),
            )
            result.failed += 1
            continue
        result.members += 1
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
