"""The program's versioned earning rules (`rule_sets`, append-only: one row per version).

The rules HTTP API (`app.rules`) edits them; the program's settings (a new base rate, time
zone or multiplier mode) write new versions too. Both go through here.

A change never rewrites a version: it inserts `version = current + 1` with the whole new
`RuleSet`. Writers of one program are serialized by a row lock on the program
(`lock_program`), and the primary key (program_id, version) is the last line of defence: a
writer that did not take the lock and lost the race gets `VersionConflict`, never a second
row for the same version.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

import asyncpg
from pydantic import ValidationError

from app import errors
from app.db import Session, Transaction
from app.domain.earning import BaseRateRule, MultiplierMode, Rule, RuleSet
from app.programs import repository as programs

BASE_RULE_ID = "base"


@dataclass(frozen=True)
class StoredRuleSet:
    rules: RuleSet
    created_at: datetime

    @property
    def version(self) -> int:
        return self.rules.version


def _stored(row: Any) -> StoredRuleSet:
    return StoredRuleSet(
        rules=RuleSet.model_validate(row["definition"]), created_at=row["created_at"]
    )


async def current(db: Session, program_id: int) -> StoredRuleSet:
    """The program's newest rule set (every program has version 1 from its creation)."""
    row = await db.fetchrow(
        "SELECT definition, created_at FROM rule_sets WHERE program_id = $1"
        " ORDER BY version DESC LIMIT 1",
        program_id,
    )
    return _stored(row)


async def by_version(db: Session, program_id: int, version: int) -> StoredRuleSet | None:
    row = await db.fetchrow(
        "SELECT definition, created_at FROM rule_sets WHERE program_id = $1 AND version = $2",
        program_id,
        version,
    )
    return _stored(row) if row else None


async def insert(db: Session, program_id: int, rules: RuleSet) -> StoredRuleSet:
    """Store `rules` as version `rules.version` and bump the program's settings version (the
    rules decide what postings are worth: those computed under the old ones are stale);
    `VersionConflict` if that version exists (a concurrent writer stored it first)."""
    try:
        created_at: datetime = await db.fetchval(
            "WITH bumped AS (UPDATE programs SET version = version + 1, updated_at = now()"
            "                 WHERE id = $1)"
            " INSERT INTO rule_sets (program_id, version, definition) VALUES ($1, $2, $3)"
            " RETURNING created_at",
            program_id,
            rules.version,
            rules.model_dump(mode="json"),
        )
    except asyncpg.UniqueViolationError as exc:
        raise errors.VersionConflict(
            f"version {rules.version} of the rules was written concurrently"
        ) from exc
    return StoredRuleSet(rules=rules, created_at=created_at)


def etag(version: int) -> str:
    """The entity tag of a version of the rules: `"7"`."""
    return f'"{version}"'


def if_match_holds(if_match: str | None, current: str) -> bool:
    """Whether an `If-Match` header value matches the entity tag `current` (RFC 9110: `*`
    or a list of tags, strong comparison, so weak tags never match). An unquoted tag is
    accepted too (`If-Match: 7`)."""
    if if_match is None:
        return True
    for part in if_match.split(","):
        tag = part.strip()
        if tag == "*" or tag == current or f'"{tag}"' == current:
            return True
    return False


def check_if_match(if_match: str | None, current: str) -> None:
    if not if_match_holds(if_match, current):
        raise errors.VersionMismatch(f"If-Match {if_match} does not match the current {current}")


def validation_failed(exc: ValidationError, prefix: Sequence[str] = ("body",)) -> errors.ApiError:
    """A pydantic error met inside a service, as the 422 the request validator would give."""
    details = [
        {
            "loc": [*prefix, *(str(part) for part in err["loc"])],
            "msg": str(err["msg"]),
            "type": str(err["type"]),
        }
        for err in exc.errors()
    ]
    first = details[0] if details else {"loc": list(prefix), "msg": "invalid"}
    where = ".".join(part for part in first["loc"] if part != "body") or "body"
    return errors.ValidationFailed(f"{where}: {first['msg']}", errors=details)


def next_version(
    base: RuleSet,
    *,
    rules: Sequence[Rule] | None = None,
    timezone: str | None = None,
    multiplier_mode: MultiplierMode | None = None,
) -> RuleSet:
    """Version `base.version + 1`: `base` with the given parts replaced (validated as a
    whole: unique ids, at most `MAX_RULES` rules)."""
    try:
        return RuleSet(
            version=base.version + 1,
            multiplier_mode=multiplier_mode or base.multiplier_mode,
            timezone=timezone or base.timezone,
            rules=tuple(base.rules if rules is None else rules),
        )
    except ValidationError as exc:
        raise validation_failed(exc) from exc


def with_base_rate(current: RuleSet, rate: Decimal) -> tuple[Rule, ...]:
    """`current`'s rules with the `base` base-rate rule at `rate` (its other fields kept), or
    with a `base` rule at `rate` appended when there is none (the last base rate: rules
    listed before it keep priority)."""
    rules = list(current.rules)
    for index, rule in enumerate(rules):
        if rule.id == BASE_RULE_ID:
            if not isinstance(rule, BaseRateRule):
                raise ValueError(f"rule {BASE_RULE_ID!r} is a {rule.kind} rule, not a base rate")
            rules[index] = BaseRateRule.model_validate(
                {**rule.model_dump(), "points_per_unit": rate}
            )
            return tuple(rules)
    return (*rules, BaseRateRule(id=BASE_RULE_ID, points_per_unit=rate))


async def set_base_rate(session: Transaction, *, program_id: int, rate: Decimal) -> RuleSet:
    """Write a new version of the rules with the `base` rule at `rate` (the CLI's
    `program set --base-rate`). ValueError if the rate is not a valid rule rate."""
    await programs.lock_program(session, program_id)
    stored = await current(session, program_id)
    try:
        rules = with_base_rate(stored.rules, rate)
        if rules == stored.rules.rules:
            return stored.rules
        new = RuleSet(
            version=stored.version + 1,
            multiplier_mode=stored.rules.multiplier_mode,
            timezone=stored.rules.timezone,
            rules=rules,
        )
    except ValidationError as exc:
        raise ValueError(f"invalid base rate: {exc.errors()[0]['msg']}") from exc
    await insert(session, program_id, new)
    return new
