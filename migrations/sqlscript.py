"""Run a multi-statement SQL script (a revision's DDL) inside a migration.

asyncpg prepares every statement it is given, and a prepared statement holds one command; a
script goes through asyncpg's simple-query path instead, on the migration's own connection and
transaction.
"""

from pathlib import Path

from alembic import op
from sqlalchemy.util import concurrency

await_ = getattr(concurrency, "await_", None) or concurrency.await_only


def run_script(sql: str) -> None:
    driver_connection = op.get_bind().connection.dbapi_connection.driver_connection
    await_(driver_connection.execute(sql))


def run_file(name: str) -> None:
    """A DDL script kept beside the revisions (migrations/<name>)."""
    run_script((Path(__file__).parent / name).read_text())
