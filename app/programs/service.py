"""Creating programs and API keys (used by the CLI and the demo)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal

from app.currency import currency_exponent
from app.db import Transaction
from app.domain.earning import BaseRateRule, RuleSet
from app.programs import repository, rule_sets
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
    session: Transaction, *, program_slug: str, scopes: Iterable[str], name: str | None = None
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
    session: Transaction,
    *,
    slug: str,
    name: str,
    currency: str = "EUR",
    base_rate: Decimal = Decimal(1),
    point_value: Decimal = Decimal(1),
    **settings: object,
) -> CreatedKey:
    """Create a program with its program accounts and a first admin key.

    `settings` are further program settings (see `configure_program`)."""
    currency = currency.upper()
    exponent = currency_exponent(currency)
    if exponent is None:
        raise ProgramSetupError(f"unknown ISO 4217 currency {currency!r}")
    if base_rate < 0 or point_value < 0:
        raise ProgramSetupError("base rate and point value must not be negative")
    if await repository.program_by_slug(session, slug) is not None:
        raise ProgramSetupError(f"a program with slug {slug!r} already exists")
    program_id = await repository.insert_program(
        session,
        slug=slug,
        name=name,
        currency=currency,
        currency_exponent=exponent,
        base_rate=base_rate,
        point_value=point_value,
    )
    # version 1 of the earning rules: the base rate alone, as the program row stores it
    # (numeric(12, 4): 1 reads back as 1.0000)
    base_rate = base_rate.quantize(BASE_RATE_SCALE)
    try:
        first = RuleSet(
            version=1,
            multiplier_mode="stack",
            timezone="UTC",
            rules=(BaseRateRule(id=rule_sets.BASE_RULE_ID, points_per_unit=base_rate),),
        )
    except ValueError as exc:
        raise ProgramSetupError(f"invalid base rate: {exc}") from exc
    await rule_sets.insert(session, program_id, first)
    await configure_program(session, slug=slug, settings=settings)
    return await create_key(session, program_slug=slug, scopes=["admin"], name="initial admin key")


RETURN_POLICIES = ("cap_at_zero", "allow_negative")
BASE_RATE_SCALE = Decimal("0.0001")  # programs.base_rate is numeric(12, 4)

_RANGES: dict[str, tuple[int, int]] = {
    "max_backdate_days": (0, 3650),
    "pending_days": (0, 365),
    "hold_ttl_seconds": (10, 604_800),
}


async def configure_program(
    session: Transaction, *, slug: str, settings: dict[str, object]
) -> None:
    """Change a program's settings: pending_days (return window), hold_ttl_seconds (default
    hold lifetime), return_policy (cap_at_zero | allow_negative), member_transfers,
    max_backdate_days, base_rate, point_value, name. A new base_rate also writes a new version
    of the earning rules, with the `base` base-rate rule at that rate (added if missing)."""
    for name, (low, high) in _RANGES.items():
        value = settings.get(name)
        if value is not None and not (isinstance(value, int) and low <= value <= high):
            raise ProgramSetupError(f"{name} must be an integer from {low} to {high}")
    policy = settings.get("return_policy")
    if policy is not None and policy not in RETURN_POLICIES:
        raise ProgramSetupError(f"return_policy must be one of {', '.join(RETURN_POLICIES)}")
    for name in ("base_rate", "point_value"):
        value = settings.get(name)
        if value is not None and (not isinstance(value, Decimal) or value < 0):
            raise ProgramSetupError(f"{name} must be a non-negative decimal")
    changes = {name: value for name, value in settings.items() if value is not None}
    program = await repository.program_by_slug(session, slug)
    if program is None:
        raise ProgramSetupError(f"no program with slug {slug!r}")
    program_id = program.id
    await repository.lock_program(session, program_id)
    try:
        if changes:
            await repository.update_program(session, program_id, changes)
    except ValueError as exc:
        raise ProgramSetupError(str(exc)) from exc
    base_rate = changes.get("base_rate")
    if isinstance(base_rate, Decimal):
        # The earning rules are versioned: a new base rate is a new version of them.
        try:
            await rule_sets.set_base_rate(session, program_id=program_id, rate=base_rate)
        except ValueError as exc:
            raise ProgramSetupError(str(exc)) from exc
