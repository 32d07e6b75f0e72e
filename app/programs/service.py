"""Creating programs and API keys (used by the CLI and the demo)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy.ext.asyncio import AsyncSession

from app.currency import currency_exponent
from app.programs import repository
from app.programs.keys import hash_key, new_key
from app.programs.models import Scope


class ProgramSetupError(ValueError):
    """Invalid program or key settings given to the CLI."""


@dataclass(frozen=True)
class CreatedKey:
    program_id: int
    program_slug: str
    api_key: str
    prefix: str
    scopes: list[str]


def parse_scopes(scopes: Iterable[str]) -> list[str]:
    parsed: list[str] = []
    for raw in scopes:
        for part in raw.split(","):
            name = part.strip()
            if not name:
                continue
            try:
                parsed.append(Scope(name).value)
            except ValueError as exc:
                valid = ", ".join(s.value for s in Scope)
                raise ProgramSetupError(f"unknown scope {name!r} (valid: {valid})") from exc
    if not parsed:
        raise ProgramSetupError("at least one scope is required")
    return sorted(set(parsed))


async def create_key(
    session: AsyncSession, *, program_slug: str, scopes: Iterable[str], name: str | None = None
) -> CreatedKey:
    program = await repository.program_by_slug(session, program_slug)
    if program is None:
        raise ProgramSetupError(f"no program with slug {program_slug!r}")
    scope_list = parse_scopes(scopes)
    api_key, prefix = new_key()
    await repository.insert_api_key(
        session,
        program_id=program.id,
        prefix=prefix,
        secret_hash=hash_key(api_key),
        scopes=scope_list,
        name=name,
    )
    return CreatedKey(program.id, program.slug, api_key, prefix, scope_list)


async def create_program(
    session: AsyncSession,
    *,
    slug: str,
    name: str,
    currency: str = "EUR",
    base_rate: Decimal = Decimal(1),
    point_value: Decimal = Decimal(1),
) -> CreatedKey:
    """Create a program with its program accounts and a first admin key."""
    currency = currency.upper()
    exponent = currency_exponent(currency)
    if exponent is None:
        raise ProgramSetupError(f"unknown ISO 4217 currency {currency!r}")
    if base_rate < 0 or point_value < 0:
        raise ProgramSetupError("base rate and point value must not be negative")
    if await repository.program_by_slug(session, slug) is not None:
        raise ProgramSetupError(f"a program with slug {slug!r} already exists")
    await repository.insert_program(
        session,
        slug=slug,
        name=name,
        currency=currency,
        currency_exponent=exponent,
        base_rate=base_rate,
        point_value=point_value,
    )
    return await create_key(session, program_slug=slug, scopes=["admin"], name="initial admin key")
