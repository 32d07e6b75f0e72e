"""Alembic environment: runs revisions over the async engine (asyncpg)."""

import asyncio
import sys
from pathlib import Path

from alembic import context
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from app.config import get_settings
from app.db import resolve_database_url, to_async_url

config = context.config
# Revisions import helpers that live beside this file.
sys.path.insert(0, str(Path(__file__).parent))


def database_url() -> str:
    url = config.attributes.get("url")
    return to_async_url(url) if url else resolve_database_url(get_settings())


def run_with(connection: Connection) -> None:
    context.configure(connection=connection, target_metadata=None, transaction_per_migration=True)
    with context.begin_transaction():
        context.run_migrations()


async def run_online() -> None:
    engine = create_async_engine(database_url(), poolclass=NullPool)
    async with engine.connect() as connection:
        await connection.run_sync(run_with)
        await connection.commit()
    await engine.dispose()


if context.is_offline_mode():
    context.configure(url=database_url(), literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
else:
    asyncio.run(run_online())
