"""The SQL source files: the one live definition of every function, trigger and view.

Each feature keeps its SQL beside its Python, in `app/<feature>/sql/*.sql`: one file per
function (a trigger function may share its file with the triggers that call it), each statement
starting with `CREATE` at the start of a line, after the comments that explain it. Migrations
are generated from these files, never written by hand: alembic_utils compares them with the
database (`alembic revision --autogenerate` writes the revision, `alembic check` fails when a
revision is missing), and a test runs that comparison against the migrated test database.

This module only reads the files; it is used by `migrations/env.py` and the tests, never by the
running service.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from alembic_utils.pg_function import PGFunction
from alembic_utils.pg_trigger import PGTrigger
from alembic_utils.pg_view import PGView
from alembic_utils.replaceable_entity import ReplaceableEntity

APP = Path(__file__).resolve().parent

# A statement starts with CREATE at the beginning of a line; comments before it document it.
_STATEMENT = re.compile(r"^CREATE\b", re.MULTILINE)
_KINDS: tuple[tuple[re.Pattern[str], type[ReplaceableEntity]], ...] = (
    (re.compile(r"^CREATE\s+(OR\s+REPLACE\s+)?FUNCTION\b", re.IGNORECASE), PGFunction),
    (re.compile(r"^CREATE\s+(CONSTRAINT\s+)?TRIGGER\b", re.IGNORECASE), PGTrigger),
    (re.compile(r"^CREATE\s+(OR\s+REPLACE\s+)?VIEW\b", re.IGNORECASE), PGView),
)


@dataclass(frozen=True)
class SqlStatement:
    """One CREATE statement of a source file."""

    path: Path
    sql: str

    @property
    def where(self) -> str:
        return str(self.path.relative_to(APP.parent))

    def entity(self) -> ReplaceableEntity:
        for pattern, kind in _KINDS:
            if pattern.match(self.sql):
                return kind.from_sql(self.sql)
        raise ValueError(f"{self.where}: not a function, trigger or view: {self.sql[:60]!r}")


def source_files(root: Path = APP) -> list[Path]:
    """Every SQL source file of the app, features in alphabetical order."""
    return sorted(root.glob("*/sql/*.sql"))


def statements(path: Path) -> Iterator[SqlStatement]:
    """The CREATE statements of one file, without the comments before each."""
    text = path.read_text()
    starts = [match.start() for match in _STATEMENT.finditer(text)]
    if not starts:
        raise ValueError(f"{path}: no CREATE statement")
    for start, end in zip(starts, [*starts[1:], len(text)], strict=True):
        body = _strip_trailing_comments(text[start:end]).strip()
        yield SqlStatement(path, body.rstrip(";").rstrip())


def _strip_trailing_comments(sql: str) -> str:
    """A statement without the comment lines that document the *next* statement."""
    lines = sql.rstrip().splitlines()
    while lines and (lines[-1].lstrip().startswith("--") or not lines[-1].strip()):
        lines.pop()
    return "\n".join(lines)


def entities(root: Path = APP) -> list[ReplaceableEntity]:
    """Every function, trigger and view, as the entities alembic_utils compares."""
    found = [statement.entity() for path in source_files(root) for statement in statements(path)]
    identities = [entity.identity for entity in found]
    duplicates = sorted({i for i in identities if identities.count(i) > 1})
    if duplicates:
        raise ValueError(f"defined more than once: {', '.join(duplicates)}")
    return found
