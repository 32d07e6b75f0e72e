"""Run a multi-statement SQL script inside a migration.

asyncpg prepares every statement it is given, and a prepared statement holds one command; a
script (tables, triggers, PL/pgSQL bodies) goes through asyncpg's simple-query path instead,
on the migration's own connection and transaction.
"""

from alembic import op
from sqlalchemy.util import concurrency

await_ = getattr(concurrency, "await_", None) or concurrency.await_only


def run_script(sql: str) -> None:
    driver_connection = op.get_bind().connection.dbapi_connection.driver_connection
    await_(driver_connection.execute(sql))
