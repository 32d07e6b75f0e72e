"""HTTP endpoint for batches of events."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends
from sqlalchemy.ext.asyncio import AsyncConnection

from app import errors
from app.db import get_autocommit_connection
from app.events import service
from app.events.schemas import BatchResult, EventBatch
from app.programs.auth import CanEarnAndRedeem

router = APIRouter(prefix="/v1/events", tags=["events"])


@router.post(
    "/batch",
    response_model=BatchResult,
    summary="Post up to 1,000 earn/redeem events at once (POS sync, imports)",
    description=(
        "One database transaction for the whole batch; each event answers `posted`, "
        "`duplicate` (its `id` was posted before: the original result) or `rejected` with a "
        "problem. One bad event never rejects the others. Event ids are idempotency keys, in "
        "the same namespace as `Idempotency-Key`. Needs the `earn` and `redeem` scopes."
    ),
    responses=errors.error_responses(body=True),
)
async def post_batch(
    body: EventBatch,
    caller: CanEarnAndRedeem,
    conn: Annotated[AsyncConnection, Depends(get_autocommit_connection)],
) -> BatchResult:
    return await service.post_batch(conn, program=caller.program, raw_events=body.events)
