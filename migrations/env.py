"""Alembic environment: runs revisions over the async engine (asyncpg).

Tables, keys and indexes are written in the revisions. Functions, triggers and views are not:
their one live definition is a .sql file beside the feature that owns it (app/**/sql/), which
`app.sqlsource` reads and registers here as alembic_utils entities. `alembic revision
--autogenerate` writes the revision that brings the database to those files, and `alembic
check` (run by the test suite) fails while such a revision is missing.
"""

import asyncio
import sys
from pathlib import Path

from alembic import context
from alembic_utils.replaceable_entity import register_entities
from sqlalchemy import MetaData
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from app.config import get_settings
from app.db import resolve_database_url, to_async_url
from app.sqlsource import entities

config = context.config
# Revisions import helpers that live beside this file.
sys.path.insert(0, str(Path(__file__).parent))

register_entities(entities())
# No SQLAlchemy models: the tables are the revisions' own DDL. Autogenerate compares only the
# SQL entities (functions, triggers, views) with the source files.
SQL_ENTITY_TYPES = {"function", "trigger", "view", "materialized_view"}


def include_object(
    obj: object, name: str | None, type_: str, reflected: bool, other: object
) -> bool:
    return type_ in SQL_ENTITY_TYPES


def database_url() -> str:
    url = config.attributes.get("url")
    return to_async_url(url) if url else resolve_database_url(get_settings())


def run_with(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=MetaData(),
        include_object=include_object,
        transaction_per_migration=True,
    )
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
