"""The posting engine, seen from Python: one call of `ledger_post_events` posts N events.

Python decides every event's policy (how many points, pending until when, when its lot lapses,
its qualifying credit, the local day, the rules' awards and the member's tier) and fills one
`PostingEvent` per event; the SQL function enforces the invariants and posts them all in a fixed
number of statements (app/ledger/sql/ledger_post_events.sql). Each event gets its own `Outcome`:

  posted    it was posted; `body` is its answer, kept under its key
  replayed  its key was answered before (possibly earlier in the same call): that answer
  refused   refused for a business reason, alone (the others post); kept under its key
  conflict  its key was used with a different request: 409 idempotency_conflict, kept nowhere
  stale     computed from a member or program state that changed since: evaluate it again

Accounting of the postings (design section 2):
  earn        issuance -> member available (or pending inside the return window; a member
              in debt repays it first); qualifying issuance -> member qualifying
  redeem      member available -> redemption
  adjust (+)  issuance -> member available;  adjust (-) member available -> issuance
  hold        member available -> member held
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Literal

from app.sqlcall import Queries, SqlBatchFunction

Kind = Literal["earn", "redeem", "adjust", "hold"]
OutcomeKind = Literal["posted", "replayed", "refused", "conflict", "stale"]


@dataclass(frozen=True, slots=True)
class PostingEvent:
    """One event for the engine: the arguments of `ledger_post_events`, one array each."""

    key: str
    fingerprint: bytes
    kind: str
    member: str
    # an earn enrols a member it names for the first time; the others refuse member_not_found
    enroll: bool
    # the signed change of the member's available points (a hold: minus what it reserves)
    points: int
    occurred_at: datetime
    # compare-and-set: the member's version the policy was computed from (None: no check)
    expected_version: int | None = None
    order_id: str | None = None
    order_amount: int | None = None
    order_currency: str | None = None
    pending_until: datetime | None = None
    lot_expires_at: datetime | None = None
    inactive_at: datetime | None = None
    qualifying: int = 0
    # the program-local day of occurred_at, when daily caps or tiers need it (member_days)
    day: date | None = None
    reason: str | None = None
    metadata: dict[str, Any] | None = None
    store_id: str | None = None
    terminal_id: str | None = None
    hold_expires_at: datetime | None = None
    awards: list[dict[str, Any]] | None = None
    tier: dict[str, Any] | None = None
    # fields the answer carries besides the engine's own (rules_version, breakdown, ...)
    answer: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class EngineCall:
    """The call's scalar arguments: one program, the settings version the events were
    computed under, and whether its members' versions are compared and set."""

    program_id: int
    program_version: int
    versioned: bool


@dataclass(frozen=True, slots=True)
class Outcome:
    outcome: OutcomeKind
    status: int | None
    body: Any
    member_id: int | None
    version: int | None


POST_EVENTS: SqlBatchFunction[EngineCall, PostingEvent] = SqlBatchFunction(
    "ledger_post_events", EngineCall, PostingEvent
)


async def post_events(db: Queries, call: EngineCall, events: list[PostingEvent]) -> list[Outcome]:
    """Post `events` in one call of the engine (one statement: run it in autocommit for one
    round trip and one commit). Raises on a fault, or on a race to retry (see commit.py)."""
    rows = await POST_EVENTS.call(db, call, events)
    return [Outcome(*row.values()) for row in rows]
