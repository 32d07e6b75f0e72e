"""SQL for the versioned earning rules (`rule_sets`, append-only: one row per version).

A change never rewrites a version: it inserts `version = current + 1` with the whole new
`RuleSet`. Writers of one program are serialized by a row lock on the program
(`lock_program`), and the primary key (program_id, version) is the last line of defence: a
writer that did not take the lock and lost the race gets `VersionConflict`, never a second
row for the same version.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import orjson
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from app import errors
from app.ledger.errors import sqlstate
from app.rules.engine import RuleSet

UNIQUE_VIOLATION = "23505"


@dataclass(frozen=True)
class StoredRuleSet:
    rules: RuleSet
    created_at: datetime

    @property
    def version(self) -> int:
        return self.rules.version


async def lock_program(session: AsyncSession, program_id: int) -> bool:
    """Take the program's row lock until the end of the transaction (False: no program).

    `FOR NO KEY UPDATE` conflicts with other writers of the program's settings and rules,
    not with the foreign-key locks that enrolments and key creation take."""
    found = await session.scalar(
        text("SELECT id FROM programs WHERE id = :id FOR NO KEY UPDATE"), {"id": program_id}
    )
    return found is not None


async def lock_program_by_slug(session: AsyncSession, slug: str) -> int | None:
    program_id: int | None = await session.scalar(
        text("SELECT id FROM programs WHERE slug = :slug FOR NO KEY UPDATE"), {"slug": slug}
    )
    return program_id


def _stored(row: object) -> StoredRuleSet:
    return StoredRuleSet(
        rules=RuleSet.model_validate(row.definition),  # type: ignore[attr-defined]
        created_at=row.created_at,  # type: ignore[attr-defined]
    )


async def current(conn: AsyncSession | AsyncConnection, program_id: int) -> StoredRuleSet:
    """The program's newest rule set (every program has version 1 from its creation)."""
    row = (
        await conn.execute(
            text(
                "SELECT definition, created_at FROM rule_sets WHERE program_id = :program_id"
                " ORDER BY version DESC LIMIT 1"
            ),
            {"program_id": program_id},
        )
    ).one()
    return _stored(row)


async def by_version(
    conn: AsyncSession | AsyncConnection, program_id: int, version: int
) -> StoredRuleSet | None:
    row = (
        await conn.execute(
            text(
                "SELECT definition, created_at FROM rule_sets"
                " WHERE program_id = :program_id AND version = :version"
            ),
            {"program_id": program_id, "version": version},
        )
    ).one_or_none()
    return _stored(row) if row else None


async def insert(session: AsyncSession, program_id: int, rules: RuleSet) -> StoredRuleSet:
    """Store `rules` as version `rules.version`; `VersionConflict` if that version exists
    (a concurrent writer stored it first). The caller's transaction is then unusable: the
    error must propagate so that the request rolls back."""
    try:
        created_at: datetime = (
            await session.execute(
                text(
                    "INSERT INTO rule_sets (program_id, version, definition)"
                    " VALUES (:program_id, :version, CAST(:definition AS jsonb))"
                    " RETURNING created_at"
                ),
                {
                    "program_id": program_id,
                    "version": rules.version,
                    "definition": orjson.dumps(rules.model_dump(mode="json")).decode(),
                },
            )
        ).scalar_one()
    except IntegrityError as exc:
        if sqlstate(exc) == UNIQUE_VIOLATION:
            raise errors.VersionConflict(
                f"version {rules.version} of the rules was written concurrently"
            ) from exc
        raise
    return StoredRuleSet(rules=rules, created_at=created_at)
