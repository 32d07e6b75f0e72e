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


async def test_program_rules_revision_keeps_data_across_downgrade_and_upgrade(database_url):
    """0006 on a ledger with data: version 1 of the rules from the base rate, an opening lot
    equal to each available balance; down to 0005 and up again works on the same data."""
    server = libpq_url(make_url(database_url).set(database="postgres").render_as_string(False))
    name = f"points_ledger_mig_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(server)
    await admin.execute(f"CREATE DATABASE {name}")
    url = to_async_url(make_url(server).set(database=name).render_as_string(False))
    try:
        await asyncio.to_thread(migrate.upgrade, url, "0005_hot_path")
        conn = await asyncpg.connect(libpq_url(url))
        try:
            program_id = await conn.fetchval(
                "INSERT INTO programs (slug, name, currency, currency_exponent, base_rate)"
                " VALUES ('m', 'M', 'EUR', 2, 2.5) RETURNING id"
            )
            await conn.execute(
                "INSERT INTO accounts (program_id, asset, kind) SELECT $1, 'points', k"
                " FROM unnest(ARRAY['issuance', 'redemption', 'breakage']) k",
                program_id,
            )
            issuance = await conn.fetchval(
                "SELECT id FROM accounts WHERE program_id = $1 AND kind = 'issuance'", program_id
            )
            await conn.fetchrow(
                "SELECT * FROM api_move_points($1, 'k1', '\\x00', 'earn', 'ann', true, 70, 70,"
                " $2, now(), NULL, NULL, '{}', NULL, NULL, NULL, NULL, NULL)",
                program_id,
                issuance,
            )
            for _ in range(2):
                await asyncio.to_thread(migrate.upgrade, url)
                definition = await conn.fetchval(
                    "SELECT definition::text FROM rule_sets WHERE program_id = $1", program_id
                )
                assert '"points_per_unit": "2.5000"' in definition
                lots = await conn.fetch("SELECT points, remaining, expires_at FROM lots")
                assert [tuple(lot) for lot in lots] == [(70, 70, None)]
                await asyncio.to_thread(migrate.downgrade, url, "0005_hot_path")
        finally:
            await conn.close()
    finally:
        await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        await admin.close()
