"""Answers as HTTP responses: a write's answer (first time or replayed) and a member's points.

An answer kept by the ledger is in points. What points are worth in money is added here, at
the program's point value (app.domain.money): every `balance` object of an answer gets
`available_value`, `pending_value` and `held_value`. A replay carries `Idempotent-Replayed:
true`; a kept refusal replays as the same problem.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any, Protocol

import orjson
from starlette.responses import Response

from app.api.problems import problem_response
from app.domain.money import valued_balance
from app.ledger.idempotency import Answer

REPLAY_HEADER = "Idempotent-Replayed"


class Priced(Protocol):
    """What an answer needs of its program: what a point is worth, in which currency."""

    @property
    def point_value(self) -> Decimal: ...

    @property
    def currency(self) -> str: ...


# the keys of an answer that hold a member's balance
BALANCE_KEYS = ("balance", "from_balance", "to_balance")


def with_money(body: dict[str, Any], program: Priced) -> dict[str, Any]:
    """`body` with money values in each of its balances."""
    found = [key for key in BALANCE_KEYS if isinstance(body.get(key), dict)]
    if not found:
        return body
    return {
        **body,
        **{key: valued_balance(body[key], program.point_value, program.currency) for key in found},
    }


def render(answer: Answer, program: Priced, headers: dict[str, str] | None = None) -> Response:
    extra = {**(headers or {}), **({REPLAY_HEADER: "true"} if answer.replayed else {})}
    if answer.refused:
        return problem_response(answer.error(), headers=extra or None)
    body = with_money(answer.body, program) if isinstance(answer.body, dict) else answer.body
    return Response(
        orjson.dumps(body),
        status_code=answer.status or 200,
        media_type="application/json",
        headers=extra or None,
    )
