"""Earning, redeeming and adjusting points: each is one event for the posting engine.

The request becomes a `PostingEvent` by the program's policy (app.points.planning, or
app.points.rules when the earn depends on the member), and goes to the engine through the
group commit of this process (app.ledger.commit): concurrent requests share one engine call and
one commit, each getting its own answer. The answer is kept under the request's idempotency
key, refusals included.

Accounting (design section 2):
  earn        issuance   -> member available (pending inside the return window)
  redeem      member available -> redemption
  adjust (+)  issuance   -> member available
  adjust (-)  member available -> issuance
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass
from datetime import UTC, datetime

from app import errors
from app.db import Database
from app.domain.earning import EarnResult
from app.ledger.commit import Committer
from app.ledger.engine import Outcome, PostingEvent
from app.ledger.idempotency import Answer
from app.points import planning, rules
from app.points.schemas import AdjustmentRequest, EarnRequest, RedeemRequest
from app.programs.auth import AuthCaches
from app.programs.models import Program
from app.referrals import repository as referral_records
from app.referrals import service as referrals

# How often an event computed from a state that changed meanwhile is computed again before the
# request gives up with a retryable 503 (a member written to without pause by other processes,
# a program whose settings keep changing).
STALE_RETRIES = 20


@dataclass(frozen=True)
class Ledger:
    """What a posting request needs: the database, this process's group commit, and the
    program cache (to read a program again when its settings changed under a posting)."""

    database: Database
    committer: Committer
    caches: AuthCaches

    async def fresh(self, program: Program) -> Program:
        return await self.caches.program(self.database, program.id, fresh=True)


def answer_of(outcome: Outcome) -> Answer:
    """The answer of an engine outcome (not `stale`: the caller computes those again)."""
    if outcome.outcome == "conflict":
        raise errors.IdempotencyConflict("the key was first used with a different request")
    if outcome.outcome == "refused":
        return Answer(status=None, body=outcome.body)
    return Answer(status=outcome.status, body=outcome.body, replayed=outcome.outcome == "replayed")


async def kept_answer(
    database: Database, program_id: int, key: str, print_: bytes
) -> Answer | None:
    """The answer already kept under `key`, if any: a request refused while being computed
    (its order now earns nothing under new rules, say) still replays its first answer."""
    async with database.single() as db:
        row = await db.fetchrow(
            "SELECT fingerprint, status_code, response FROM idempotency_keys"
            " WHERE program_id = $1 AND key = $2",
            program_id,
            key,
        )
    if row is None or row["response"] is None:
        return None
    if row["fingerprint"] != print_:
        raise errors.IdempotencyConflict("the key was first used with a different request")
    return Answer(status=row["status_code"], body=row["response"], replayed=True)


async def _post(ledger: Ledger, program: Program, event: PostingEvent) -> Outcome:
    return await ledger.committer.post(planning.engine_call(program), event)


async def earn(ledger: Ledger, *, program: Program, key: str, request: EarnRequest) -> Answer:
    """Award points: explicit `points`, or what the program's rules give the order."""
    print_ = planning.request_print("earn", request)
    for _ in range(STALE_RETRIES):
        now = datetime.now(UTC)
        member: rules.MemberRules | None = None
        result: EarnResult | None
        try:
            if request.points is not None or not program.rules_need_member:
                event, result = planning.earn_event(
                    program, key=key, request_fingerprint=print_, request=request, now=now
                )
            else:
                async with ledger.committer.member_turn(program.id, request.member):
                    outcome, event, result, member = await _member_earn(
                        ledger, program, key, print_, request, now
                    )
        except errors.ApiError:
            kept = await kept_answer(ledger.database, program.id, key, print_)
            if kept is not None:
                return kept
            raise
        if member is None:
            outcome = await _post(ledger, program, event)
        if outcome.outcome == "stale":
            if outcome.version is None:  # the program's settings changed, not the member
                program = await ledger.fresh(program)
            await asyncio.sleep(random.uniform(0, 0.002))
            continue
        answer = answer_of(outcome)
        if (
            outcome.outcome == "posted"
            and member is not None
            and member.open_referral
            and result is not None
            and outcome.member_id is not None
        ):
            answer = await _after_earn(ledger, program, key, event, result, outcome, answer)
        return answer
    raise errors.ServiceUnavailable("the member changed under every attempt; retry")


async def _member_earn(
    ledger: Ledger,
    program: Program,
    key: str,
    print_: bytes,
    request: EarnRequest,
    now: datetime,
) -> tuple[Outcome, PostingEvent, EarnResult | None, rules.MemberRules]:
    """An earn whose rules depend on the member: read its context, evaluate, post with a
    compare-and-set on its version (the caller holds this process's turn for the member)."""
    occurred_at = planning.check_occurred_at(program, request.occurred_at, now)
    async with ledger.database.single() as db:
        contexts = await rules.read_contexts(db, program, [request.member], [occurred_at], now)
    planned = rules.Evaluator(program, contexts, now).plan(
        key=key, request_fingerprint=print_, request=request
    )
    outcome = await _post(ledger, program, planned.event)
    return outcome, planned.event, planned.result, planned.member


async def _after_earn(
    ledger: Ledger,
    program: Program,
    key: str,
    event: PostingEvent,
    result: EarnResult,
    outcome: Outcome,
    answer: Answer,
) -> Answer:
    """A referee's first qualifying order rewards its referral (after the earn committed); the
    earn's kept answer then shows the balance with the referee's bonus."""
    assert outcome.member_id is not None
    rewarded = await referrals.reward_after_earn(
        ledger.database,
        program,
        outcome.member_id,
        event.order_id,
        result.earning_base,
        event.occurred_at,
    )
    if rewarded is None:
        return answer
    async with ledger.database.single() as db:
        body = await referral_records.refresh_kept_balance(
            db, program_id=program.id, key=key, member_id=outcome.member_id
        )
    return Answer(status=answer.status, body=body)


async def redeem(ledger: Ledger, *, program: Program, key: str, request: RedeemRequest) -> Answer:
    print_ = planning.request_print("redeem", request)
    for _ in range(STALE_RETRIES):
        try:
            event = planning.redeem_event(
                program,
                key=key,
                request_fingerprint=print_,
                request=request,
                now=datetime.now(UTC),
            )
        except errors.ApiError:
            kept = await kept_answer(ledger.database, program.id, key, print_)
            if kept is not None:
                return kept
            raise
        outcome = await _post(ledger, program, event)
        if outcome.outcome != "stale":
            return answer_of(outcome)
        program = await ledger.fresh(program)
    raise errors.ServiceUnavailable("the program's settings kept changing; retry")


async def adjust(
    ledger: Ledger, *, program: Program, key: str, request: AdjustmentRequest
) -> Answer:
    print_ = planning.request_print("adjust", request)
    for _ in range(STALE_RETRIES):
        event = planning.adjust_event(
            program, key=key, request_fingerprint=print_, request=request, now=datetime.now(UTC)
        )
        outcome = await _post(ledger, program, event)
        if outcome.outcome != "stale":
            return answer_of(outcome)
        program = await ledger.fresh(program)
    raise errors.ServiceUnavailable("the program's settings kept changing; retry")
