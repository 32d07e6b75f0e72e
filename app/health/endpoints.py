"""Liveness and readiness probes."""

from __future__ import annotations

from fastapi import APIRouter, Request
from pydantic import BaseModel

from app import errors
from app.db import get_database

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
async def readyz(request: Request) -> Health:
    try:
        await get_database(request).ping()
    except Exception as exc:  # any failure to reach the database means "not ready"
        raise errors.ServiceUnavailable("database unreachable") from exc
    return Health(status="ok")
