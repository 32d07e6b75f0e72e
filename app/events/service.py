"""Batch ingestion: up to 1,000 earn/redeem events in one statement and one commit.

Each event is validated on its own and computed by the same rules as the single endpoints
(`earn_move`, `redeem_move`); the valid ones go to `api_event_batch` in one round trip, which
posts each exactly as `api_move_points` would, isolating refusals per event. An event's `id`
is its idempotency key: a POS that syncs the same sale twice gets `duplicate` the second time.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
from pydantic import ValidationError
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from app import errors
from app.events.schemas import EVENT, BatchResult, EarnEvent, EventResult
from app.ledger import errors as ledger_errors
from app.ledger.fingerprint import fingerprint
from app.members.schemas import Balance
from app.points import service as points
from app.points.schemas import EarnRequest, RedeemRequest
from app.points.service import Move, earn_move, move_params, redeem_move
from app.programs.models import Program

_BATCH = text("SELECT api_event_batch(:program_id, CAST(:events AS jsonb))::text")


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


def _event_arguments(
    program: Program, event_id: str, request_print: bytes, move: Move
) -> dict[str, Any]:
    params = move_params(program, event_id, request_print, move)
    params["fingerprint"] = request_print.hex()
    params["metadata"] = move.metadata or {}
    for name in ("occurred_at", "pending_until"):
        value = params[name]
        params[name] = value.isoformat() if value is not None else None
    return params


def prepare(
    program: Program, raw_events: list[dict[str, Any]], now: datetime
) -> tuple[list[EventResult | None], list[tuple[int, dict[str, Any]]]]:
    """Validate and compute every event: results for the refused ones, arguments for the rest."""
    results: list[EventResult | None] = [None] * len(raw_events)
    to_post: list[tuple[int, dict[str, Any]]] = []
    for index, raw in enumerate(raw_events):
        raw_id = raw.get("id")
        event_id = raw_id if isinstance(raw_id, str) else None
        try:
            event = EVENT.validate_python(raw)
        except ValidationError as exc:
            results[index] = _rejected(event_id, _validation_problem(exc))
            continue
        kind = "earn" if isinstance(event, EarnEvent) else "redeem"
        try:
            move = (
                earn_move(program, event, now)
                if isinstance(event, EarnEvent)
                else redeem_move(program, event, now)
            )
        except errors.ApiError as exc:
            results[index] = _rejected(event.id, exc)
            continue
        # the same fingerprint as POST /v1/earn or /v1/redeem with the same fields
        request_print = fingerprint(kind, event.model_dump(mode="json", exclude={"id", "type"}))
        to_post.append((index, _event_arguments(program, event.id, request_print, move)))
    return results, to_post


def _outcome(event_id: str, outcome: dict[str, Any]) -> EventResult:
    if outcome["status"] == "rejected":
        error_class = ledger_errors.BY_SQLSTATE.get(outcome["sqlstate"], errors.ApiError)
        return _rejected(event_id, error_class(outcome.get("detail")))
    body = outcome["body"]
    return EventResult(
        id=event_id,
        status=outcome["status"],
        transaction_id=body["transaction_id"],
        member=body["member"],
        points=body["points"],
        balance=Balance.model_validate(body["balance"]),
    )


async def _post_one_by_one(
    conn: AsyncConnection, program: Program, raw_events: list[dict[str, Any]]
) -> list[EventResult]:
    """Events of a program whose earning rules depend on the member (tiers, once-only bonuses,
    challenges, daily caps, referrals): each goes through the single-event path, in order, so
    that every earn sees what the events before it did to the member."""
    results: list[EventResult] = []
    for raw in raw_events:
        raw_id = raw.get("id")
        try:
            event = EVENT.validate_python(raw)
        except ValidationError as exc:
            results.append(
                _rejected(raw_id if isinstance(raw_id, str) else None, _validation_problem(exc))
            )
            continue
        fields = event.model_dump(exclude={"id", "type"})
        try:
            if isinstance(event, EarnEvent):
                stored = await points.earn(
                    conn,
                    program=program,
                    key=event.id,
                    request=EarnRequest.model_validate(fields),
                )
            else:
                stored = await points.redeem(
                    conn,
                    program=program,
                    key=event.id,
                    request=RedeemRequest.model_validate(fields),
                )
        except errors.ApiError as exc:
            results.append(_rejected(event.id, exc))
            continue
        body = stored.body if isinstance(stored.body, dict) else orjson.loads(stored.body)
        status = "duplicate" if stored.replayed else "posted"
        results.append(_outcome(event.id, {"status": status, "body": body}))
    return results


async def post_batch(
    conn: AsyncConnection, *, program: Program, raw_events: list[dict[str, Any]]
) -> BatchResult:
    if program.rules_need_member:
        return _summary(await _post_one_by_one(conn, program, raw_events))
    results, to_post = prepare(program, raw_events, datetime.now(UTC))
    if to_post:
        encoded = orjson.dumps([arguments for _, arguments in to_post]).decode()
        outcome_text = await conn.scalar(_BATCH, {"program_id": program.id, "events": encoded})
        outcomes = orjson.loads(outcome_text or "[]")
        for (index, arguments), outcome in zip(to_post, outcomes, strict=True):
            results[index] = _outcome(arguments["key"], outcome)
    return _summary([r for r in results if r is not None])


def _summary(final: list[EventResult]) -> BatchResult:
    return BatchResult(
        posted=sum(r.status == "posted" for r in final),
        duplicate=sum(r.status == "duplicate" for r in final),
        rejected=sum(r.status == "rejected" for r in final),
        results=final,
    )
