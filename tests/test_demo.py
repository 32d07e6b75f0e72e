"""`serve --demo`'s admin key: printed again on the next run while it works, else replaced.

The demo setup runs here in-process against the test database (the program slug `demo` is this
module's alone), with a temporary data directory for the key file. A real pair of
`serve --demo` runs is in tests/test_serve_signals.py (the crash-and-adopt test).
"""

from __future__ import annotations

import asyncio
import stat
from pathlib import Path

import httpx

from app.db import Database
from app.demo import demo_key, key_path
from app.programs import service as program_service


async def works(client: httpx.AsyncClient, key: str) -> bool:
    response = await client.get("/v1/program", headers={"Authorization": f"Bearer {key}"})
    assert response.status_code in (200, 401), response.text
    return response.status_code == 200


async def test_demo_key_is_kept_then_replaced_with_the_earlier_ones_revoked(
    database: Database, client: httpx.AsyncClient, tmp_path: Path
) -> None:
    first = await demo_key(database, tmp_path)
    assert not first.reused
    assert first.path == key_path(tmp_path)
    assert first.path.read_text().strip() == first.api_key
    assert stat.S_IMODE(first.path.stat().st_mode) == 0o600
    assert await works(client, first.api_key)

    # The next run: the same key, and nothing revoked.
    again = await demo_key(database, tmp_path)
    assert again.reused
    assert again.api_key == first.api_key
    assert again.revoked == 0
    assert await works(client, first.api_key)

    # A key someone made for the demo program by hand is not the demo's to revoke.
    async with database.transaction() as session:
        own = await program_service.create_key(
            session, program_slug="demo", scopes=["admin"], name="my key"
        )

    # The file is gone (or belongs to another database): a new key, and the old one revoked.
    first.path.unlink()
    replaced = await demo_key(database, tmp_path)
    assert not replaced.reused
    assert replaced.api_key != first.api_key
    assert replaced.revoked == 1
    assert replaced.path.read_text().strip() == replaced.api_key
    assert stat.S_IMODE(replaced.path.stat().st_mode) == 0o600
    assert await works(client, replaced.api_key)
    await asyncio.sleep(0.6)  # the test app caches keys for 0.5 s
    assert not await works(client, first.api_key)
    assert await works(client, own.api_key)

    # A file whose key does not work (revoked, mistyped) is replaced the same way.
    replaced.path.write_text("plk_000000000000_not-a-key\n")
    fixed = await demo_key(database, tmp_path)
    assert not fixed.reused
    assert fixed.revoked == 1
    assert await works(client, fixed.api_key)
    await asyncio.sleep(0.6)
    assert not await works(client, replaced.api_key)
