"""HTTP endpoint for batches of events."""

from __future__ import annotations

from fastapi import APIRouter

from app.api.problems import error_responses
from app.events import service
from app.events.schemas import BatchResult, EventBatch
from app.points.deps import Postings
from app.programs.access import CanEarnAndRedeem

router = APIRouter(prefix="/v1/events", tags=["events"])


@router.post(
    "/batch",
    response_model=BatchResult,
    summary="Post up to 1,000 earn/redeem events at once (POS sync, imports)",
    description=(
        "One engine call and one commit for the whole batch; each event answers `posted`, "
        "`duplicate` (its `id` was answered before: the original answer) or `rejected` with a "
        "problem. One bad event never rejects the others. Event ids are idempotency keys, in "
        "the same namespace as `Idempotency-Key`; a refused event stays refused under its id. "
        "Needs the `earn` and `redeem` scopes."
    ),
    responses=error_responses(body=True),
)
async def post_batch(body: EventBatch, caller: CanEarnAndRedeem, ledger: Postings) -> BatchResult:
    return await service.post_batch(ledger, program=caller.program, raw_events=body.events)
