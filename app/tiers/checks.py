"""Tier statuses against the ledger: `verify`'s check and `rebuild`'s recomputation.

The rules are Python functions, so this is checked in Python, from the ledger itself (the
member side of the `qualifying` asset by local day of `occurred_at`, and the memberships), not
from the `member_days` projection the hot path reads. A stored status must equal the one
evaluated from scratch to its `evaluated_on`, or at least the one evaluated from what had been
recorded when it was stored (it is then only not evaluated since: the next read brings it up
to date). Registered with the ledger's registry on import (app.ledger.checks).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from app.db import Database, Session
from app.domain.dates import local_date
from app.domain.tiers import QualifyingEvent, TierProgram
from app.ledger.checks import FeatureCheck, register_check, register_rebuild
from app.tiers import repository
from app.tiers.projection import MembershipTerm, from_scratch, parse_status, usable_memberships

BATCH = 200  # members per query (and per rebuild transaction, their locks included)

_MEMBERS = """
    SELECT m.id, m.created_at, t.tier, t.status, t.evaluated_on, t.updated_at
      FROM members m
      LEFT JOIN member_tiers t ON t.program_id = m.program_id AND t.member_id = m.id
     WHERE m.program_id = $1 AND m.id > $2 AND (t.member_id IS NOT NULL OR NOT $4)
     ORDER BY m.id LIMIT $3
"""
_EVENTS = """
    SELECT e.member_id, (t.occurred_at AT TIME ZONE $3)::date AS day,
           sum(e.amount)::bigint AS amount,
           coalesce(sum(e.amount) FILTER (WHERE t.recorded_at <= s.updated_at), 0)::bigint
               AS seen
      FROM entries e
      JOIN transactions t ON t.program_id = e.program_id AND t.id = e.transaction_id
      LEFT JOIN member_tiers s ON s.program_id = e.program_id AND s.member_id = e.member_id
     WHERE e.program_id = $1 AND e.member_id = ANY ($2::bigint[]) AND e.asset = 'qualifying'
     GROUP BY 1, 2 ORDER BY 1, 2
"""
_MEMBERSHIPS = """
    SELECT m.member_id, m.tier, m.starts_on, m.ends_on, (m.created_at <= s.updated_at) AS seen
      FROM memberships m
      LEFT JOIN member_tiers s ON s.program_id = m.program_id AND s.member_id = m.member_id
     WHERE m.program_id = $1 AND m.member_id = ANY ($2::bigint[]) ORDER BY m.id
"""


@dataclass
class _History:
    events: list[QualifyingEvent] = field(default_factory=list)
    seen_events: list[QualifyingEvent] = field(default_factory=list)
    terms: list[MembershipTerm] = field(default_factory=list)
    seen_terms: list[MembershipTerm] = field(default_factory=list)


async def _tier_programs(db: Session) -> list[tuple[int, str, TierProgram]]:
    found = []
    for row in await db.fetch(
        "SELECT id, timezone, tier_program FROM programs WHERE tier_program IS NOT NULL ORDER BY id"
    ):
        try:
            found.append(
                (row["id"], row["timezone"], TierProgram.model_validate(row["tier_program"]))
            )
        except ValidationError:
            continue  # a program whose tiers do not parse has no tiers to check
    return found


async def _batches(db: Session, program_id: int, *, stored_only: bool) -> AsyncIterator[list[Any]]:
    after = 0
    while True:
        rows = await db.fetch(_MEMBERS, program_id, after, BATCH, stored_only)
        if not rows:
            return
        yield rows
        after = rows[-1]["id"]


async def _histories(
    db: Session, program_id: int, timezone: str, ids: list[int]
) -> dict[int, _History]:
    histories: dict[int, _History] = defaultdict(_History)
    for row in await db.fetch(_EVENTS, program_id, ids, timezone):
        history = histories[row["member_id"]]
        if row["amount"]:
            history.events.append(QualifyingEvent(row["day"], int(row["amount"])))
        if row["seen"]:
            history.seen_events.append(QualifyingEvent(row["day"], int(row["seen"])))
    for row in await db.fetch(_MEMBERSHIPS, program_id, ids):
        term = MembershipTerm(row["tier"], row["starts_on"], row["ends_on"])
        histories[row["member_id"]].terms.append(term)
        if row["seen"]:
            histories[row["member_id"]].seen_terms.append(term)
    return histories


def _drift(
    program: TierProgram, timezone: str, row: Any, history: _History
) -> dict[str, Any] | None:
    enrolled_on = local_date(row["created_at"], timezone)
    stored = parse_status(program, row["status"])
    if stored is None:
        return {"stored": row["tier"], "expected": None, "problem": "unreadable status"}
    if row["tier"] != stored.tier:
        return {"stored": row["tier"], "expected": stored.tier, "problem": "tier column"}
    day = row["evaluated_on"]
    try:
        expected = from_scratch(
            program, enrolled_on, history.events, usable_memberships(program, history.terms), day
        ).status
        if expected == stored:
            return None
        seen = from_scratch(
            program,
            enrolled_on,
            history.seen_events,
            usable_memberships(program, history.seen_terms),
            day,
        ).status
    except ValueError as exc:
        return {"stored": stored.tier, "expected": None, "problem": str(exc)}
    if seen == stored:
        return None
    return {
        "stored": stored.model_dump(mode="json"),
        "expected": expected.model_dump(mode="json"),
        "evaluated_on": day.isoformat(),
    }


async def tier_drift(db: Session, sample: int) -> list[dict[str, Any]]:
    """Members whose stored tier status differs from the one recomputed from the ledger."""
    offending: list[dict[str, Any]] = []
    for program_id, timezone, program in await _tier_programs(db):
        async for rows in _batches(db, program_id, stored_only=True):
            histories = await _histories(db, program_id, timezone, [r["id"] for r in rows])
            for row in rows:
                problem = _drift(program, timezone, row, histories.get(row["id"]) or _History())
                if problem is not None:
                    offending.append({"program_id": program_id, "member_id": row["id"], **problem})
                    if len(offending) >= sample:
                        return offending
    return offending


async def rebuild_tiers(
    database: Database, *, program_id: int | None = None, now: datetime | None = None
) -> int:
    """Recompute every member's tier status (of every program with tiers, or of `program_id`)
    from scratch to today (local), in short transactions of a few hundred members each holding
    those members' locks (so no earn or read evaluates a member while it is rebuilt). Returns
    how many stored statuses were wrong (those verify reports); the others are brought up to
    today too. Run it after changing a program's tiers."""
    now = now or datetime.now(UTC)
    corrected = 0
    async with database.single() as db:
        programs = await _tier_programs(db)
    for program_id_, timezone, program in programs:
        if program_id is not None and program_id_ != program_id:
            continue
        today = local_date(now, timezone)
        after = 0
        while True:
            async with database.single() as db:
                ids = [r["id"] for r in await db.fetch(_MEMBERS, program_id_, after, BATCH, False)]
            if not ids:
                break
            after = ids[-1]
            async with database.lock_members(program_id_, ids) as locks:
                # read under the locks: an evaluation may have stored a status meanwhile
                rows = await locks.fetch(
                    "SELECT m.id, m.created_at, t.tier, t.status, t.evaluated_on, t.updated_at"
                    " FROM members m LEFT JOIN member_tiers t"
                    "   ON t.program_id = m.program_id AND t.member_id = m.id"
                    " WHERE m.program_id = $1 AND m.id = ANY ($2::bigint[]) ORDER BY m.id",
                    program_id_,
                    ids,
                )
                histories = await _histories(locks, program_id_, timezone, ids)
                for row in rows:
                    history = histories.get(row["id"]) or _History()
                    status = from_scratch(
                        program,
                        local_date(row["created_at"], timezone),
                        history.events,
                        usable_memberships(program, history.terms),
                        today,
                    ).status
                    # wrong as of its own day (what verify reports) is a correction; a status
                    # merely not evaluated since, or never evaluated, is brought up to date
                    if row["status"] is not None and _drift(program, timezone, row, history):
                        corrected += 1
                    stored = parse_status(program, row["status"])
                    if (
                        stored == status
                        and row["tier"] == status.tier
                        and row["evaluated_on"] == today
                    ):
                        continue
                    await repository.save_status(locks, program_id_, row["id"], status, today)
    return corrected


register_check(
    FeatureCheck(
        "tiers_match_ledger",
        "every stored tier status equals the one recomputed from scratch from the member's"
        " qualifying entries and memberships (to its evaluated_on)",
        tier_drift,
    )
)
register_rebuild("tiers", rebuild_tiers)
