"""The ledger's invariants hold in PostgreSQL itself: these tests attack them with plain SQL,
the way a buggy script or a psql session would, and expect the database to refuse."""

from __future__ import annotations

import asyncpg
import pytest

from tests.support import TestProgram, earn


async def _posted(client, program: TestProgram, member: str = "alice", points: int = 100) -> int:
    response = await earn(client, program, member, points)
    assert response.status_code == 201, response.text
    transaction_id: int = response.json()["transaction_id"]
    return transaction_id


async def _program_account(sql: asyncpg.Connection, program: TestProgram, kind: str) -> int:
    account_id: int = await sql.fetchval(
        "SELECT id FROM accounts WHERE program_id = $1 AND member_id IS NULL AND kind = $2",
        program.id,
        kind,
    )
    return account_id


# --- 1. append-only -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE transactions SET kind = 'adjust' WHERE id = $1",
        "UPDATE transactions SET occurred_at = occurred_at - interval '1 day' WHERE id = $1",
        "DELETE FROM transactions WHERE id = $1",
        "UPDATE entries SET amount = amount * 2 WHERE transaction_id = $1",
        "DELETE FROM entries WHERE transaction_id = $1",
    ],
)
async def test_ledger_rows_cannot_be_updated_or_deleted(client, program, sql, statement):
    transaction_id = await _posted(client, program)
    before = await sql.fetch("SELECT * FROM entries WHERE transaction_id = $1", transaction_id)
    with pytest.raises(asyncpg.PostgresError, match="append-only") as raised:
        await sql.execute(statement, transaction_id)
    assert raised.value.sqlstate == "PL001"
    after = await sql.fetch("SELECT * FROM entries WHERE transaction_id = $1", transaction_id)
    assert after == before


@pytest.mark.parametrize("table", ["transactions", "entries"])
async def test_ledger_tables_cannot_be_truncated(sql, table):
    with pytest.raises(asyncpg.PostgresError, match="append-only"):
        await sql.execute(f"TRUNCATE {table} CASCADE")


# --- 2. balanced ----------------------------------------------------------------------------


async def _new_transaction(sql: asyncpg.Connection, program: TestProgram) -> int:
    transaction_id: int = await sql.fetchval(
        "INSERT INTO transactions (program_id, kind, occurred_at) VALUES ($1, 'adjust', now())"
        " RETURNING id",
        program.id,
    )
    return transaction_id


async def test_an_unbalanced_transaction_cannot_be_committed(program, sql):
    issuance = await _program_account(sql, program, "issuance")
    breakage = await _program_account(sql, program, "breakage")
    with pytest.raises(asyncpg.PostgresError, match="unbalanced") as raised:
        async with sql.transaction():
            transaction_id = await _new_transaction(sql, program)
            await sql.execute(
                "INSERT INTO entries (transaction_id, leg, program_id, account_id, asset, amount)"
                " VALUES ($1, 1, $2, $3, 'points', -100), ($1, 2, $2, $4, 'points', 99)",
                transaction_id,
                program.id,
                issuance,
                breakage,
            )
    assert raised.value.sqlstate == "PL003"
    count = await sql.fetchval(
        "SELECT count(*) FROM transactions WHERE program_id = $1", program.id
    )
    assert count == 0


async def test_legs_added_one_at_a_time_are_refused(program, sql):
    """A transaction's legs go in together: a lone leg is unbalanced when it is inserted."""
    issuance = await _program_account(sql, program, "issuance")
    with pytest.raises(asyncpg.PostgresError, match="unbalanced"):
        async with sql.transaction():
            transaction_id = await _new_transaction(sql, program)
            await sql.execute(
                "INSERT INTO entries (transaction_id, leg, program_id, account_id, asset, amount)"
                " VALUES ($1, 1, $2, $3, 'points', -100)",
                transaction_id,
                program.id,
                issuance,
            )
    assert (
        await sql.fetchval("SELECT count(*) FROM transactions WHERE program_id = $1", program.id)
        == 0
    )


async def test_a_leg_on_another_programs_account_is_refused(program, other_program, sql):
    ours = await _program_account(sql, program, "issuance")
    theirs = await _program_account(sql, other_program, "breakage")
    with pytest.raises(asyncpg.PostgresError, match="does not match account") as raised:
        async with sql.transaction():
            transaction_id = await _new_transaction(sql, program)
            await sql.execute(
                "INSERT INTO entries (transaction_id, leg, program_id, account_id, asset, amount)"
                " VALUES ($1, 1, $2, $3, 'points', -5), ($1, 2, $2, $4, 'points', 5)",
                transaction_id,
                program.id,
                ours,
                theirs,
            )
    assert raised.value.sqlstate == "PL002"


async def test_a_balanced_transaction_posts(program, sql):
    issuance = await _program_account(sql, program, "issuance")
    breakage = await _program_account(sql, program, "breakage")
    transaction_id = await sql.fetchval(
        "SELECT ledger_post($1, 'adjust', NULL, now(), $2::bigint[], $3::bigint[])",
        program.id,
        [issuance, breakage],
        [-7, 7],
    )
    total = await sql.fetchval(
        "SELECT sum(amount) FROM entries WHERE transaction_id = $1", transaction_id
    )
    assert total == 0


# --- 3. no overdraft ------------------------------------------------------------------------


async def test_a_member_balance_cannot_go_below_zero_even_by_hand(client, program, sql):
    await _posted(client, program, "bob", 10)
    with pytest.raises(asyncpg.CheckViolationError, match="no_overdraft"):
        await sql.execute(
            "UPDATE accounts SET balance = balance - 11"
            " WHERE program_id = $1 AND member_id IS NOT NULL AND kind = 'available'"
            " AND asset = 'points'",
            program.id,
        )


async def test_posting_more_than_available_raises_and_posts_nothing(client, program, sql):
    await _posted(client, program, "carol", 10)
    available, redemption = await sql.fetchrow(
        "SELECT (SELECT id FROM accounts WHERE program_id = $1 AND kind = 'available'"
        " AND asset = 'points'),"
        " (SELECT id FROM accounts WHERE program_id = $1 AND kind = 'redemption')",
        program.id,
    )
    member_id = await sql.fetchval("SELECT id FROM members WHERE program_id = $1", program.id)
    # the account's CHECK is the backstop under every caller's own check
    with pytest.raises(asyncpg.CheckViolationError, match="no_overdraft") as raised:
        await sql.fetchval(
            "SELECT ledger_post($1, 'redeem', $2, now(), $3::bigint[], $4::bigint[])",
            program.id,
            member_id,
            [available, redemption],
            [-11, 11],
        )
    assert raised.value.sqlstate == "23514"
    assert await sql.fetchval("SELECT balance FROM accounts WHERE id = $1", available) == 10
    count = await sql.fetchval(
        "SELECT count(*) FROM transactions WHERE program_id = $1", program.id
    )
    assert count == 1


# --- 4. idempotent (database side) ----------------------------------------------------------


async def test_an_idempotency_key_is_unique_per_program(program, sql):
    await sql.execute(
        "INSERT INTO idempotency_keys (program_id, key, fingerprint) VALUES ($1, 'k', '\\x01')",
        program.id,
    )
    with pytest.raises(asyncpg.UniqueViolationError):
        await sql.execute(
            "INSERT INTO idempotency_keys (program_id, key, fingerprint) VALUES ($1, 'k', '\\x02')",
            program.id,
        )
    # Clean up the half-claimed key so the ledger-wide verify stays green.
    await sql.execute("DELETE FROM idempotency_keys WHERE program_id = $1", program.id)
