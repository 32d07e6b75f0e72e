"""A database outage is a retryable 503, not a 500."""

from __future__ import annotations

import httpx

from app.config import Settings
from app.main import create_app
from tests.support import free_port


async def test_requests_get_503_with_retry_after_when_the_database_is_down(program):
    dead = f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/nothing"
    app = create_app(Settings(cache_ttl_seconds=0), database_url=dead)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            response = await client.get("/v1/members/x", headers=program.headers)
            ready = await client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["code"] == "service_unavailable"
    assert response.headers["Retry-After"] == "1"
    assert ready.status_code == 503
