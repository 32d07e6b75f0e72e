"""The FastAPI application: routers, middleware, error handlers and lifespan."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from app.api.middleware import BodySizeLimit
from app.api.problems import install_error_handlers
from app.config import Settings, get_settings
from app.db import Database, resolve_database_url
from app.events.endpoints import router as events_router
from app.expiry.endpoints import router as expiry_router
from app.health.endpoints import router as health_router
from app.holds.endpoints import router as holds_router
from app.ledger.commit import Committer, GroupCommit
from app.logging import configure_logging
from app.members.endpoints import router as members_router
from app.orders.endpoints import router as orders_router
from app.points.endpoints import router as points_router
from app.programs.auth import AuthCaches
from app.programs.endpoints import router as program_router
from app.quotes.endpoints import router as quotes_router
from app.referrals.endpoints import router as referrals_router
from app.rules.endpoints import router as rules_router
from app.tiers.endpoints import router as tiers_router
from app.transactions.endpoints import router as transactions_router
from app.transfers.endpoints import router as transfers_router

DESCRIPTION = """
A headless loyalty-points service. Every points movement is a transaction in an append-only,
double-entry ledger; balances are projections of it.

* **Auth**: `Authorization: Bearer <api key>`; keys carry scopes `earn`, `redeem`, `read`,
  `admin` (admin implies all).
* **Idempotency**: every write takes an `Idempotency-Key` header. Replaying a key returns the
  first response with `Idempotent-Replayed: true`; the same key with another body is `409`.
* **Errors**: RFC 9457 `application/problem+json` with a stable `code`.
* **Amounts**: integers: points, and money in minor units with an ISO 4217 currency.
"""


def create_app(settings: Settings | None = None, database_url: str | None = None) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        url = database_url or resolve_database_url(settings)
        database = await Database.connect(url, settings)
        app.state.database = database
        app.state.committer = Committer(
            database,
            GroupCommit(
                enabled=settings.group_commit,
                max_batch=settings.group_commit_max_batch,
                max_in_flight=settings.group_commit_max_in_flight,
                window_seconds=settings.group_commit_window_ms / 1000,
            ),
        )
        try:
            yield
        finally:
            await app.state.committer.close()
            await database.close()

    app = FastAPI(
        title="points-ledger",
        version="0.1.0",
        description=DESCRIPTION,
        lifespan=lifespan,
    )
    app.state.auth_caches = AuthCaches.with_ttl(settings.cache_ttl_seconds)
    install_error_handlers(app)

    app.include_router(health_router)
    app.include_router(members_router)
    app.include_router(points_router)
    app.include_router(transactions_router)
    app.include_router(holds_router)
    app.include_router(orders_router)
    app.include_router(transfers_router)
    app.include_router(quotes_router)
    app.include_router(events_router)
    app.include_router(expiry_router)
    app.include_router(referrals_router)
    app.include_router(program_router)
    app.include_router(rules_router)
    app.include_router(tiers_router)
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    return app


def app_factory() -> FastAPI:
    """Entry point for uvicorn workers (`--factory`)."""
    settings = get_settings()
    configure_logging(settings.log_level, settings.log_json)
    return create_app(settings)
