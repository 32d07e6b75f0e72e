"""The `points-ledger` command, run as a subprocess against the test database."""

from __future__ import annotations

import asyncio
import json
import uuid

import asyncpg

from tests.support import earn, libpq_url, run_cli


async def test_program_create_prints_json_with_a_working_key(database_url, client):
    slug = f"cli-{uuid.uuid4().hex[:8]}"
    result = await run_cli(
        database_url,
        "program",
        "create",
        "--slug",
        slug,
        "--name",
        "CLI shop",
        "--currency",
        "USD",
        "--base-rate",
        "3",
        "--json",
    )
    assert result.returncode == 0, result.stderr
    created = json.loads(result.stdout)
    assert created["program"] == slug
    assert isinstance(created["program_id"], int)
    headers = {"Authorization": f"Bearer {created['api_key']}", "Idempotency-Key": "k1"}
    response = await client.post(
        "/v1/earn",
        json={"member": "u", "order": {"id": "o", "amount": 1050, "currency": "USD"}},
        headers=headers,
    )
    assert response.json()["points"] == 31  # USD 10.50 x 3 = 31.5, rounded down

    duplicate = await run_cli(database_url, "program", "create", "--slug", slug, "--name", "again")
    assert duplicate.returncode == 2
    assert "already exists" in duplicate.stderr
    bad_currency = await run_cli(
        database_url, "program", "create", "--slug", slug + "x", "--name", "n", "--currency", "XYZ"
    )
    assert bad_currency.returncode == 2
    assert "currency" in bad_currency.stderr


async def test_keys_create_and_revoke(database_url, client, program):
    result = await run_cli(
        database_url, "keys", "create", "--program", program.slug, "--scopes", "read", "--json"
    )
    assert result.returncode == 0, result.stderr
    key = json.loads(result.stdout)
    assert key["scopes"] == ["read"]
    headers = {"Authorization": f"Bearer {key['api_key']}"}
    await earn(client, program, "k", 1)
    assert (await client.get("/v1/members/k", headers=headers)).status_code == 200

    revoked = await run_cli(database_url, "keys", "revoke", key["api_key"])
    assert revoked.returncode == 0, revoked.stderr
    await asyncio.sleep(0.6)  # the test app caches keys for 0.5 s
    response = await client.get("/v1/members/k", headers=headers)
    assert response.status_code == 401
    again = await run_cli(database_url, "keys", "revoke", key["key_prefix"])
    assert again.returncode == 2


async def test_verify_passes_then_catches_a_tampered_projection_and_rebuild_repairs_it(
    database_url, client, program
):
    await earn(client, program, "tamper", 100)
    clean = await run_cli(database_url, "verify")
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert "all invariants hold" in clean.stdout

    sql = await asyncpg.connect(libpq_url(database_url))
    try:
        account_id = await sql.fetchval(
            "UPDATE accounts SET balance = balance + 5 WHERE program_id = $1"
            " AND kind = 'available' AND asset = 'points' RETURNING id",
            program.id,
        )
        drifted = await run_cli(database_url, "verify")
        assert drifted.returncode == 1
        assert "balances_match_entries" in drifted.stdout
        assert "DRIFT" in drifted.stdout
        assert str(account_id) in drifted.stdout

        rebuilt = await run_cli(database_url, "rebuild")
        assert rebuilt.returncode == 0, rebuilt.stderr
        assert "1 row(s) corrected" in rebuilt.stdout
        assert await sql.fetchval("SELECT balance FROM accounts WHERE id = $1", account_id) == 100
    finally:
        await sql.close()
    assert (await run_cli(database_url, "verify")).returncode == 0


async def test_verify_catches_a_disabled_append_only_trigger(database_url):
    sql = await asyncpg.connect(libpq_url(database_url))
    try:
        await sql.execute("ALTER TABLE entries DISABLE TRIGGER entries_append_only")
        try:
            result = await run_cli(database_url, "verify")
        finally:
            await sql.execute("ALTER TABLE entries ENABLE TRIGGER entries_append_only")
    finally:
        await sql.close()
    assert result.returncode == 1
    assert "append_only_enforced" in result.stdout
    assert "entries_append_only" in result.stdout


async def test_rebuild_on_a_clean_ledger_changes_nothing(database_url):
    result = await run_cli(database_url, "rebuild")
    assert result.returncode == 0, result.stderr
    assert "0 row(s) corrected" in result.stdout


async def test_migrate_is_idempotent(database_url):
    result = await run_cli(database_url, "migrate")
    assert result.returncode == 0, result.stderr
