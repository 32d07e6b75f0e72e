"""The demo program of `serve --demo` and its admin key, which stays the same across restarts.

The first `serve --demo` creates the program `demo` and writes its admin key to
`<data dir>/demo-admin-key` (mode 0600; keys are stored hashed, so the file is the only place
to print it again from). Later runs print that key again as long as it works in this database.
When it does not (the file was deleted, the key revoked, the database is another one), they
create a new key and revoke every earlier key that `serve --demo` handed out, so that one demo
key works at a time.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from app.db import Database, Session
from app.programs import repository as programs
from app.programs import service as program_service
from app.programs.keys import hash_key
from app.programs.models import Scope

DEMO_SLUG = "demo"
KEY_FILE = "demo-admin-key"
KEY_NAME = "demo admin key"
# The names of the keys `serve --demo` hands out: the program's first key (create_program names
# it) and the keys of later runs. Keys made with `keys create` are never touched.
_DEMO_KEY_NAMES = ("initial admin key", KEY_NAME)


@dataclass(frozen=True)
class DemoKey:
    api_key: str
    path: Path  # where it is kept
    reused: bool  # the key of an earlier run, printed again
    revoked: int  # earlier demo keys revoked because this one is new


def key_path(data_dir: Path) -> Path:
    return data_dir.expanduser() / KEY_FILE


def _read_key(path: Path) -> str | None:
    try:
        key = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return None
    return key or None


def _write_key(path: Path, key: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    # mkstemp creates the file 0600 before anything is written to it; the rename replaces an
    # older file whatever its mode was.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{KEY_FILE}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(key + "\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


async def _is_demo_admin_key(db: Session, program_id: int, key: str) -> bool:
    found = await programs.active_key_by_hash(db, hash_key(key))
    return found is not None and found.program_id == program_id and Scope.ADMIN in found.scopes


async def _revoke_demo_keys(db: Session, program_id: int, keep: str) -> int:
    rows = await db.fetch(
        "UPDATE api_keys SET revoked_at = now()"
        " WHERE program_id = $1 AND name = ANY ($2::text[])"
        " AND revoked_at IS NULL AND prefix <> $3 RETURNING prefix",
        program_id,
        list(_DEMO_KEY_NAMES),
        keep,
    )
    return len(rows)


async def demo_key(database: Database, data_dir: Path) -> DemoKey:
    """The demo program (created once) and its admin key: the kept one if it still works, else
    a new one that replaces every earlier demo key."""
    path = key_path(data_dir)
    kept = _read_key(path)
    async with database.transaction() as session:
        program = await programs.program_by_slug(session, DEMO_SLUG)
        if program is None:
            created = await program_service.create_program(
                session, slug=DEMO_SLUG, name="Demo Coffee Club", currency="EUR"
            )
            revoked = 0
        elif kept is not None and await _is_demo_admin_key(session, program.id, kept):
            return DemoKey(api_key=kept, path=path, reused=True, revoked=0)
        else:
            created = await program_service.create_key(
                session, program_slug=DEMO_SLUG, scopes=["admin"], name=KEY_NAME
            )
            revoked = await _revoke_demo_keys(session, program.id, keep=created.prefix)
    # Written after the commit: the file never names a key the database did not take. A crash
    # in between leaves the old file, whose key then no longer works; the next run replaces it.
    _write_key(path, created.api_key)
    return DemoKey(api_key=created.api_key, path=path, reused=False, revoked=revoked)
