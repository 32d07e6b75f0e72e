"""Holds: points reserved at checkout (available -> held), then captured (held ->
redemption, the rest back to available) or released (held -> available).

Creating a hold is an event for the posting engine (kind `hold`, group-committed like an
earn); capturing or releasing one is one call of `holds_settle` (app/holds/sql), which locks the
member, checks the hold and keeps its answer. A hold nobody closes is released when it expires:
by the worker, and lazily by the next read or write of that member, so correctness never depends
on the worker being up. The points a hold gives back return to the very lots it took, with
their expiry.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from app import errors
from app.db import Session
from app.holds.schemas import CaptureHold, CreateHold
from app.ledger.engine import PostingEvent
from app.ledger.idempotency import Answer, fingerprint
from app.points import planning
from app.points.service import STALE_RETRIES, Ledger, answer_of
from app.programs.models import Program


async def create(ledger: Ledger, *, program: Program, key: str, request: CreateHold) -> Answer:
    print_ = fingerprint("hold", request.model_dump(mode="json"))
    for _ in range(STALE_RETRIES):
        now = datetime.now(UTC)
        ttl = request.expires_in or program.hold_ttl_seconds
        event = PostingEvent(
            key=key,
            fingerprint=print_,
            kind="hold",
            member=request.member,
            enroll=False,
            points=-request.points,
            occurred_at=now,
            order_id=request.order_id,
            hold_expires_at=now + timedelta(seconds=ttl),
        )
        outcome = await ledger.committer.post(planning.engine_call(program), event)
        if outcome.outcome != "stale":
            return answer_of(outcome)
        program = await ledger.fresh(program)
    raise errors.ServiceUnavailable("the program's settings kept changing; retry")


_SETTLE = "SELECT o_replayed, o_status, o_body FROM holds_settle($1, $2, $3, $4, $5)"


async def settle(
    db: Session, *, program: Program, key: str, hold_id: int, print_: bytes, capture: int | None
) -> Answer:
    """Capture (`capture` points; None: all of them) or release (0) a hold."""
    row = await db.fetchrow(_SETTLE, program.id, key, print_, hold_id, capture)
    assert row is not None
    return Answer(status=row["o_status"], body=row["o_body"], replayed=row["o_replayed"])


async def capture(
    db: Session, *, program: Program, key: str, hold_id: int, request: CaptureHold
) -> Answer:
    print_ = fingerprint("capture", {"hold_id": hold_id, **request.model_dump(mode="json")})
    return await settle(
        db, program=program, key=key, hold_id=hold_id, print_=print_, capture=request.points
    )


async def release(db: Session, *, program: Program, key: str, hold_id: int) -> Answer:
    print_ = fingerprint("release", {"hold_id": hold_id})
    return await settle(db, program=program, key=key, hold_id=hold_id, print_=print_, capture=0)


async def get(db: Session, *, program: Program, hold_id: int) -> dict[str, Any]:
    """The hold as of now (its member's due maintenance first: an expired hold shows as such)."""
    view: dict[str, Any] | None = await db.fetchval("SELECT holds_get($1, $2)", program.id, hold_id)
    if view is None:
        raise errors.HoldNotFound(f"no hold {hold_id} in this program")
    return view
