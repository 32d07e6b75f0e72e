"""Liveness and readiness probes."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel

from app import errors
from app.api.deps import Db

router = APIRouter(tags=["health"])


class Health(BaseModel):
    status: str


@router.get("/healthz", response_model=Health, summary="The process is up")
async def healthz() -> Health:
    return Health(status="ok")


@router.get(
    "/readyz",
    response_model=Health,
    summary="The database is reachable",
    responses={503: {"description": "Database unreachable", "model": errors.Problem}},
)
async def readyz(database: Db) -> Health:
    try:
        await database.ping()
    except Exception as exc:  # any failure to reach the database means "not ready"
        raise errors.ServiceUnavailable("database unreachable") from exc
    return Health(status="ok")
