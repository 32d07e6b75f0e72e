"""Run a multi-statement SQL script inside a migration.

asyncpg prepares every statement it is given, and a prepared statement holds one command; a
script (tables, triggers, PL/pgSQL bodies) goes through asyncpg's simple-query path instead,
on the migration's own connection and transaction.
"""

import importlib.util
import re
from pathlib import Path
from types import ModuleType

from alembic import op
from sqlalchemy.util import concurrency

await_ = getattr(concurrency, "await_", None) or concurrency.await_only


def run_script(sql: str) -> None:
    driver_connection = op.get_bind().connection.dbapi_connection.driver_connection
    await_(driver_connection.execute(sql))


def revision_module(filename: str) -> ModuleType:
    """Load another revision file as a module (to reuse its SQL in a downgrade)."""
    path = Path(__file__).parent / "versions" / filename
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def function_definition(script: str, name: str) -> str:
    """The `CREATE [OR REPLACE] FUNCTION name(…) … $$;` statement for `name` in a script."""
    found = re.search(rf"CREATE (OR REPLACE )?FUNCTION {name}\(", script)
    if found is None:
        raise ValueError(f"no function {name} in the script")
    start = found.start()
    body_start = script.index("$$", start) + 2
    end = script.index("$$;", body_start) + 3
    return script[start:end]
