"""SQL for programs and API keys."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import TypeVar

from pydantic import BaseModel, TypeAdapter
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from app.programs.models import ApiKey, Program
from app.rules.engine import RuleSet
from app.rules.expiry import ExpiryPolicy
from app.rules.referrals import ReferralPolicy
from app.rules.tiers import TierProgram

PROGRAM_ACCOUNT_KINDS = ("issuance", "redemption", "breakage")

_PROGRAM_COLUMNS = """
    p.id, p.slug, p.name, p.currency, p.currency_exponent, p.base_rate, p.point_value,
    p.max_backdate_days, p.pending_days, p.hold_ttl_seconds, p.return_policy, p.member_transfers,
    (SELECT jsonb_object_agg(a.kind, a.id) FROM accounts a
      WHERE a.program_id = p.id AND a.member_id IS NULL AND a.asset = 'points') AS accounts,
    p.timezone, p.expiry_policy, p.tier_program, p.referral_policy,
    (SELECT r.definition FROM rule_sets r WHERE r.program_id = p.id
      ORDER BY r.version DESC LIMIT 1) AS rules
"""

_EXPIRY_POLICY: TypeAdapter[ExpiryPolicy] = TypeAdapter(ExpiryPolicy)


def _program(row: object) -> Program:
    return Program(
        id=row.id,  # type: ignore[attr-defined]
        slug=row.slug,  # type: ignore[attr-defined]
        name=row.name,  # type: ignore[attr-defined]
        currency=row.currency,  # type: ignore[attr-defined]
        currency_exponent=row.currency_exponent,  # type: ignore[attr-defined]
        base_rate=row.base_rate,  # type: ignore[attr-defined]
        point_value=row.point_value,  # type: ignore[attr-defined]
        max_backdate_days=row.max_backdate_days,  # type: ignore[attr-defined]
        pending_days=row.pending_days,  # type: ignore[attr-defined]
        hold_ttl_seconds=row.hold_ttl_seconds,  # type: ignore[attr-defined]
        return_policy=row.return_policy,  # type: ignore[attr-defined]
        member_transfers=row.member_transfers,  # type: ignore[attr-defined]
        accounts=dict(row.accounts or {}),  # type: ignore[attr-defined]
        timezone=row.timezone,  # type: ignore[attr-defined]
        rules=RuleSet.model_validate(row.rules),  # type: ignore[attr-defined]
        expiry_policy=_EXPIRY_POLICY.validate_python(row.expiry_policy),  # type: ignore[attr-defined]
        tier_program=_optional(TierProgram, row.tier_program),  # type: ignore[attr-defined]
        referral_policy=_optional(ReferralPolicy, row.referral_policy),  # type: ignore[attr-defined]
    )


M = TypeVar("M", bound=BaseModel)


def _optional(model: type[M], value: object) -> M | None:
    return None if value is None else model.model_validate(value)


async def insert_program(
    session: AsyncSession,
    *,
    slug: str,
    name: str,
    currency: str,
    currency_exponent: int,
    base_rate: Decimal,
    point_value: Decimal,
) -> int:
    program_id: int = (
        await session.execute(
            text(
                "INSERT INTO programs (slug, name, currency, currency_exponent, base_rate,"
                " point_value) VALUES (:slug, :name, :currency, :exponent, :base_rate,"
                " :point_value) RETURNING id"
            ),
            {
                "slug": slug,
                "name": name,
                "currency": currency,
                "exponent": currency_exponent,
                "base_rate": base_rate,
                "point_value": point_value,
            },
        )
    ).scalar_one()
    await session.execute(
        text(
            "INSERT INTO accounts (program_id, asset, kind)"
            " SELECT :program_id, 'points', kind FROM unnest(CAST(:kinds AS text[])) AS kind"
        ),
        {"program_id": program_id, "kinds": list(PROGRAM_ACCOUNT_KINDS)},
    )
    return program_id


async def program_by_id(conn: AsyncConnection | AsyncSession, program_id: int) -> Program | None:
    row = (
        await conn.execute(
            text(f"SELECT {_PROGRAM_COLUMNS} FROM programs p WHERE p.id = :id"),
            {"id": program_id},
        )
    ).one_or_none()
    return _program(row) if row else None


PROGRAM_SETTINGS = (
    "name",
    "base_rate",
    "point_value",
    "max_backdate_days",
    "pending_days",
    "hold_ttl_seconds",
    "return_policy",
    "member_transfers",
)


async def update_program(session: AsyncSession, slug: str, settings: dict[str, object]) -> bool:
    """Change program settings (names from PROGRAM_SETTINGS); False if no such program."""
    unknown = set(settings) - set(PROGRAM_SETTINGS)
    if unknown:
        raise ValueError(f"unknown program settings: {sorted(unknown)}")
    if not settings:
        return await program_by_slug(session, slug) is not None
    assignments = ", ".join(f"{name} = :{name}" for name in settings)
    result = await session.execute(
        text(
            f"UPDATE programs SET {assignments}, updated_at = now() WHERE slug = :slug RETURNING id"
        ),
        {**settings, "slug": slug},
    )
    return result.first() is not None


async def program_by_slug(conn: AsyncConnection | AsyncSession, slug: str) -> Program | None:
    row = (
        await conn.execute(
            text(f"SELECT {_PROGRAM_COLUMNS} FROM programs p WHERE p.slug = :slug"),
            {"slug": slug},
        )
    ).one_or_none()
    return _program(row) if row else None


async def insert_api_key(
    session: AsyncSession,
    *,
    program_id: int,
    prefix: str,
    secret_hash: bytes,
    scopes: Sequence[str],
    name: str | None,
) -> int:
    key_id: int = (
        await session.execute(
            text(
                "INSERT INTO api_keys (program_id, prefix, secret_hash, scopes, name)"
                " VALUES (:program_id, :prefix, :secret_hash, :scopes, :name) RETURNING id"
            ),
            {
                "program_id": program_id,
                "prefix": prefix,
                "secret_hash": secret_hash,
                "scopes": list(scopes),
                "name": name,
            },
        )
    ).scalar_one()
    return key_id


async def active_key_by_hash(conn: AsyncConnection, secret_hash: bytes) -> ApiKey | None:
    row = (
        await conn.execute(
            text(
                "SELECT id, program_id, prefix, scopes FROM api_keys"
                " WHERE secret_hash = :hash AND revoked_at IS NULL"
            ),
            {"hash": secret_hash},
        )
    ).one_or_none()
    if row is None:
        return None
    return ApiKey(
        id=row.id, program_id=row.program_id, prefix=row.prefix, scopes=frozenset(row.scopes)
    )


async def revoke_key(session: AsyncSession, prefix: str) -> bool:
    result = await session.execute(
        text(
            "UPDATE api_keys SET revoked_at = now() WHERE prefix = :prefix AND revoked_at IS NULL"
            " RETURNING id"
        ),
        {"prefix": prefix},
    )
    return result.first() is not None
