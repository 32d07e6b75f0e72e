"""Batch ingestion: up to 1,000 earn/redeem events in one engine call and one commit.

Each event is validated on its own and priced by the same policy as the single endpoints
(app.points.planning; app.points.rules when earns depend on the member, the batch's member
contexts read in one statement and evaluated in order, so every earn sees what the events
before it did to the member). The valid ones go to the engine in one call, which posts each
exactly as POST /v1/earn or /v1/redeem would and refuses each alone. An event's `id` is its
idempotency key: a POS that syncs the same sale twice gets `duplicate` the second time, and a
refused one is refused again.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from app import errors
from app.domain.money import valued_balance
from app.events.schemas import EVENT, BatchResult, EarnEvent, EventResult
from app.ledger.engine import Outcome, PostingEvent
from app.members.schemas import Balance
from app.points import planning, rules
from app.points.schemas import EarnRequest, RedeemRequest
from app.points.service import STALE_RETRIES, Ledger
from app.programs.models import Program
from app.referrals import service as referrals


def _rejected(event_id: str | None, error: errors.ApiError) -> EventResult:
    return EventResult(id=event_id, status="rejected", problem=error.problem())


def _validation_problem(exc: ValidationError) -> errors.ApiError:
    first = exc.errors()[0]
    where = ".".join(str(part) for part in first["loc"]) or "event"
    details = [
        {"loc": [str(p) for p in e["loc"]], "msg": str(e["msg"]), "type": str(e["type"])}
        for e in exc.errors()
    ]
    return errors.ValidationFailed(f"{where}: {first['msg']}", errors=details)


@dataclass
class _Valid:
    """An event that passed validation: its place in the batch and its request."""

    index: int
    id: str
    request: EarnRequest | RedeemRequest
    fingerprint: bytes


def _validate(raw_events: list[dict[str, Any]]) -> tuple[list[EventResult | None], list[_Valid]]:
    results: list[EventResult | None] = [None] * len(raw_events)
    valid: list[_Valid] = []
    for index, raw in enumerate(raw_events):
        raw_id = raw.get("id")
        try:
            event = EVENT.validate_python(raw)
        except ValidationError as exc:
            event_id = raw_id if isinstance(raw_id, str) else None
            results[index] = _rejected(event_id, _validation_problem(exc))
            continue
        fields = event.model_dump(exclude={"id", "type"})
        request: EarnRequest | RedeemRequest
        if isinstance(event, EarnEvent):
            request = EarnRequest.model_validate(fields)
            kind = "earn"
        else:
            request = RedeemRequest.model_validate(fields)
            kind = "redeem"
        # the same fingerprint as POST /v1/earn or /v1/redeem with the same fields
        valid.append(_Valid(index, event.id, request, planning.request_print(kind, request)))
    return results, valid


@dataclass
class _Planned:
    valid: _Valid
    event: PostingEvent | None
    problem: errors.ApiError | None = None
    member: rules.MemberRules | None = None
    earning_base: int = 0


async def _plan(
    ledger: Ledger, program: Program, todo: list[_Valid], now: datetime
) -> list[_Planned]:
    """Each event's posting (or why it cannot be computed), in batch order."""
    evaluator: rules.Evaluator | None = None
    member_earns = [
        v
        for v in todo
        if isinstance(v.request, EarnRequest)
        and v.request.points is None
        and program.rules_need_member
    ]
    if member_earns:
        instants = [v.request.occurred_at or now for v in member_earns]
        async with ledger.database.single() as db:
            contexts = await rules.read_contexts(
                db, program, [v.request.member for v in member_earns], instants, now
            )
        evaluator = rules.Evaluator(program, contexts, now)
    planned: list[_Planned] = []
    for valid in todo:
        request = valid.request
        try:
            if isinstance(request, RedeemRequest):
                event = planning.redeem_event(
                    program,
                    key=valid.id,
                    request_fingerprint=valid.fingerprint,
                    request=request,
                    now=now,
                )
                planned.append(_Planned(valid, event))
            elif evaluator is not None and request.points is None:
                result = evaluator.plan(
                    key=valid.id, request_fingerprint=valid.fingerprint, request=request
                )
                base = result.result.earning_base if result.result else 0
                planned.append(_Planned(valid, result.event, None, result.member, base))
            else:
                event, _ = planning.earn_event(
                    program,
                    key=valid.id,
                    request_fingerprint=valid.fingerprint,
                    request=request,
                    now=now,
                )
                planned.append(_Planned(valid, event))
        except errors.ApiError as exc:
            planned.append(_Planned(valid, None, exc))
    return planned


def _result(program: Program, event_id: str, outcome: Outcome) -> EventResult:
    if outcome.outcome == "conflict":
        return _rejected(
            event_id, errors.IdempotencyConflict("the id was first used with another event")
        )
    body = outcome.body
    if outcome.status is None:  # a refusal, new or replayed
        return _rejected(event_id, errors.by_code(body["code"])(body.get("detail")))
    return EventResult(
        id=event_id,
        status="duplicate" if outcome.outcome == "replayed" else "posted",
        transaction_id=body["transaction_id"],
        member=body["member"],
        points=body["points"],
        balance=Balance.model_validate(
            valued_balance(body["balance"], program.point_value, program.currency)
        ),
    )


async def post_batch(
    ledger: Ledger, *, program: Program, raw_events: list[dict[str, Any]]
) -> BatchResult:
    results, todo = _validate(raw_events)
    rewards: list[_Planned] = []
    for _ in range(STALE_RETRIES):
        if not todo:
            break
        planned = await _plan(ledger, program, todo, datetime.now(UTC))
        posting = [p for p in planned if p.event is not None]
        outcomes = (
            await ledger.committer.run(
                planning.engine_call(program), [p.event for p in posting if p.event]
            )
            if posting
            else []
        )
        stale: list[_Valid] = []
        for item, outcome in zip(posting, outcomes, strict=True):
            if outcome.outcome == "stale":
                stale.append(item.valid)
                continue
            results[item.valid.index] = _result(program, item.valid.id, outcome)
            if (
                outcome.outcome == "posted"
                and item.member is not None
                and item.member.open_referral
            ):
                rewards.append(item)
        refused = [p for p in planned if p.event is None]
        kept = await _kept(ledger, program, [p.valid for p in refused])
        for item in refused:
            assert item.problem is not None
            results[item.valid.index] = kept.get(item.valid.id) or _rejected(
                item.valid.id, item.problem
            )
        if len(stale) == len(posting) and stale:
            program = await ledger.fresh(program)  # the settings changed: all of it again
        todo = sorted(stale, key=lambda v: v.index)
    for valid in todo:  # still stale after every attempt
        results[valid.index] = _rejected(
            valid.id, errors.ServiceUnavailable("the member changed under every attempt; retry")
        )
    for item in rewards:
        assert item.event is not None and item.member is not None
        await referrals.reward_after_earn(
            ledger.database,
            program,
            item.member.member_id or 0,
            item.event.order_id,
            item.earning_base,
            item.event.occurred_at,
        )
    final = [r for r in results if r is not None]
    return BatchResult(
        posted=sum(r.status == "posted" for r in final),
        duplicate=sum(r.status == "duplicate" for r in final),
        rejected=sum(r.status == "rejected" for r in final),
        results=final,
    )


async def _kept(ledger: Ledger, program: Program, refused: list[_Valid]) -> dict[str, EventResult]:
    """The kept answers of events refused while being computed: one whose id was answered
    before is a duplicate, not a new refusal."""
    if not refused:
        return {}
    async with ledger.database.single() as db:
        rows = await db.fetch(
            "SELECT key, fingerprint, status_code, response FROM idempotency_keys"
            " WHERE program_id = $1 AND key = ANY ($2::text[])",
            program.id,
            [v.id for v in refused],
        )
    prints = {v.id: v.fingerprint for v in refused}
    found: dict[str, EventResult] = {}
    for row in rows:
        outcome = Outcome(
            outcome="replayed" if row["fingerprint"] == prints[row["key"]] else "conflict",
            status=row["status_code"],
            body=row["response"],
            member_id=None,
            version=None,
        )
        found[row["key"]] = _result(program, row["key"], outcome)
    return found
