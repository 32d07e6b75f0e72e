"""SQL for programs and API keys."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import Any, TypeVar

from pydantic import BaseModel, TypeAdapter

from app.db import Session
from app.domain.earning import RuleSet
from app.domain.expiry import ExpiryPolicy
from app.domain.referrals import ReferralPolicy
from app.domain.tiers import TierProgram
from app.programs.models import ApiKey, Program

# the program's accounts: points come from issuance and go to redemption or breakage; the tier
# metric's qualifying credit comes from its own issuance
PROGRAM_ACCOUNTS = (
    ("points", "issuance"),
    ("points", "redemption"),
    ("points", "breakage"),
    ("qualifying", "issuance"),
)

_PROGRAM = """
    SELECT p.id, p.slug, p.name, p.currency, p.currency_exponent, p.base_rate, p.point_value,
           p.max_backdate_days, p.pending_days, p.hold_ttl_seconds, p.return_policy,
           p.member_transfers, p.version, p.timezone, p.expiry_policy, p.tier_program,
           p.referral_policy,
           (SELECT r.definition FROM rule_sets r WHERE r.program_id = p.id
             ORDER BY r.version DESC LIMIT 1) AS rules
      FROM programs p
"""

_EXPIRY_POLICY: TypeAdapter[ExpiryPolicy] = TypeAdapter(ExpiryPolicy)
M = TypeVar("M", bound=BaseModel)


def _optional(model: type[M], value: object) -> M | None:
    return None if value is None else model.model_validate(value)


def _program(row: Any) -> Program:
    return Program(
        id=row["id"],
        slug=row["slug"],
        name=row["name"],
        currency=row["currency"],
        currency_exponent=row["currency_exponent"],
        base_rate=row["base_rate"],
        point_value=row["point_value"],
        max_backdate_days=row["max_backdate_days"],
        pending_days=row["pending_days"],
        hold_ttl_seconds=row["hold_ttl_seconds"],
        return_policy=row["return_policy"],
        member_transfers=row["member_transfers"],
        version=row["version"],
        timezone=row["timezone"],
        rules=RuleSet.model_validate(row["rules"]),
        expiry_policy=_EXPIRY_POLICY.validate_python(row["expiry_policy"]),
        tier_program=_optional(TierProgram, row["tier_program"]),
        referral_policy=_optional(ReferralPolicy, row["referral_policy"]),
    )


async def program_by_id(db: Session, program_id: int) -> Program | None:
    row = await db.fetchrow(_PROGRAM + " WHERE p.id = $1", program_id)
    return _program(row) if row else None


async def program_by_slug(db: Session, slug: str) -> Program | None:
    row = await db.fetchrow(_PROGRAM + " WHERE p.slug = $1", slug)
    return _program(row) if row else None


async def lock_program(db: Session, program_id: int) -> None:
    """Serialise changes of one program's settings and rules (the program row, until commit)."""
    await db.execute("SELECT 1 FROM programs WHERE id = $1 FOR UPDATE", program_id)


async def insert_program(
    db: Session,
    *,
    slug: str,
    name: str,
    currency: str,
    currency_exponent: int,
    base_rate: Decimal,
    point_value: Decimal,
) -> int:
    """A program with its accounts (rule set 1 is the caller's: app.rules.service)."""
    program_id: int = await db.fetchval(
        "INSERT INTO programs (slug, name, currency, currency_exponent, base_rate, point_value)"
        " VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
        slug,
        name,
        currency,
        currency_exponent,
        base_rate,
        point_value,
    )
    await db.execute(
        "INSERT INTO accounts (program_id, asset, kind)"
        " SELECT $1, a.asset, a.kind FROM unnest($2::text[], $3::text[]) AS a (asset, kind)",
        program_id,
        [asset for asset, _ in PROGRAM_ACCOUNTS],
        [kind for _, kind in PROGRAM_ACCOUNTS],
    )
    return program_id


PROGRAM_SETTINGS = (
    "name",
    "base_rate",
    "point_value",
    "max_backdate_days",
    "pending_days",
    "hold_ttl_seconds",
    "return_policy",
    "member_transfers",
    "timezone",
    "multiplier_mode",
    "expiry_policy",
    "tier_program",
    "referral_policy",
)


async def update_program(db: Session, program_id: int, settings: dict[str, object]) -> None:
    """Change program settings (names from PROGRAM_SETTINGS); bumps the settings version, so
    postings computed under the old settings are refused as stale and computed again."""
    unknown = set(settings) - set(PROGRAM_SETTINGS)
    if unknown:
        raise ValueError(f"unknown program settings: {sorted(unknown)}")
    names = list(settings)
    assignments = "".join(f"{name} = ${i}, " for i, name in enumerate(names, 2))
    await db.execute(
        f"UPDATE programs SET {assignments}version = version + 1, updated_at = now() WHERE id = $1",
        program_id,
        *(settings[name] for name in names),
    )


async def insert_api_key(
    db: Session,
    *,
    program_id: int,
    prefix: str,
    secret_hash: bytes,
    scopes: Sequence[str],
    name: str | None,
) -> int:
    key_id: int = await db.fetchval(
        "INSERT INTO api_keys (program_id, prefix, secret_hash, scopes, name)"
        " VALUES ($1, $2, $3, $4, $5) RETURNING id",
        program_id,
        prefix,
        secret_hash,
        list(scopes),
        name,
    )
    return key_id


async def active_key_by_hash(db: Session, secret_hash: bytes) -> ApiKey | None:
    row = await db.fetchrow(
        "SELECT id, program_id, prefix, scopes FROM api_keys"
        " WHERE secret_hash = $1 AND revoked_at IS NULL",
        secret_hash,
    )
    if row is None:
        return None
    return ApiKey(
        id=row["id"],
        program_id=row["program_id"],
        prefix=row["prefix"],
        scopes=frozenset(row["scopes"]),
    )


async def revoke_key(db: Session, prefix: str) -> bool:
    revoked = await db.fetchval(
        "UPDATE api_keys SET revoked_at = now() WHERE prefix = $1 AND revoked_at IS NULL"
        " RETURNING id",
        prefix,
    )
    return revoked is not None
