"""Every revision is reversible: upgrade, downgrade to nothing, upgrade again."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
from sqlalchemy.engine import make_url

from app import migrate
from app.db import to_async_url
from tests.support import libpq_url


async def test_migrations_downgrade_and_upgrade_cleanly(database_url):
    server = libpq_url(make_url(database_url).set(database="postgres").render_as_string(False))
    name = f"points_ledger_mig_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(server)
    await admin.execute(f"CREATE DATABASE {name}")
    url = to_async_url(make_url(server).set(database=name).render_as_string(False))
    try:
        await asyncio.to_thread(migrate.upgrade, url)
        await asyncio.to_thread(migrate.downgrade, url, "base")
        conn = await asyncpg.connect(libpq_url(url))
        try:
            leftovers = await conn.fetch(
                "SELECT relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
                " WHERE n.nspname = 'public' AND c.relkind IN ('r', 'S', 'v', 'f')"
                " AND relname <> 'alembic_version'"
                " UNION ALL SELECT proname FROM pg_proc p"
                " JOIN pg_namespace n ON n.oid = p.pronamespace"
                " WHERE n.nspname = 'public'"
            )
        finally:
            await conn.close()
        assert leftovers == []
        await asyncio.to_thread(migrate.upgrade, url)
    finally:
        await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        await admin.close()
