"""A program's settings over the API: read them whole, replace them whole.

`PUT /v1/program` is a full replace: every setting must be given (`tiers` and `referrals` may
be `null`, which turns them off), so a client that forgets a field gets a 422 instead of
silently resetting it. The read-only fields of `GET` (`id`, `slug`, `currency`,
`rules_version`) may be sent back unchanged; another currency is 422 `currency_immutable`,
another id or slug 422 `read_only_field`, another rules_version 412 `version_mismatch`.

The earning rules carry the program's time zone and multiplier mode (they decide what an earn
is worth), so changing either writes a new version of the rules with the same rules in it: an
earn recorded under version N keeps meaning what it meant.

Responses carry an `ETag` (a digest of the settings); `PUT` with `If-Match` applies only while
the settings are still the ones that tag names (412 `version_mismatch` otherwise).
"""

from __future__ import annotations

import hashlib
from decimal import Decimal
from typing import Annotated, Any, Literal, Self

import orjson
from pydantic import Field, StringConstraints, model_validator

from app import errors
from app.db import Session, Transaction
from app.domain.earning import MultiplierMode
from app.domain.expiry import ExpiryPolicy
from app.domain.referrals import ReferralPolicy
from app.domain.tiers import TierProgram
from app.domain.types import Text, Timezone
from app.ledger import idempotency
from app.ledger.idempotency import fingerprint
from app.programs import repository as programs
from app.programs import rule_sets
from app.programs.models import Program
from app.schemas import StrictModel

ProgramName = Annotated[Text, StringConstraints(min_length=1, max_length=200)]
# programs.point_value is numeric(18, 6)
PointValue = Annotated[
    Decimal,
    Field(
        ge=0,
        max_digits=18,
        decimal_places=6,
        allow_inf_nan=False,
        description="Money value of one point in minor units of the currency (a decimal with"
        ' at most 6 places): "1" is one cent for EUR.',
        examples=["1", "0.5"],
    ),
]
ReturnPolicy = Literal["cap_at_zero", "allow_negative"]


class ProgramSettings(StrictModel):
    """The settings of a program that an admin can change."""

    name: ProgramName
    timezone: Timezone = Field(
        description="IANA time zone of the program's local days: rule windows, daily caps,"
        " birthdays, challenges, tier periods and expiry dates."
    )
    multiplier_mode: MultiplierMode = Field(
        description="How multipliers combine: `stack` (they multiply) or `best` (only the"
        " highest applies)."
    )
    point_value: PointValue
    pending_days: int = Field(
        strict=True, ge=0, le=365, description="Days earned points stay pending (return window)."
    )
    hold_ttl_seconds: int = Field(
        strict=True, ge=10, le=604_800, description="Default lifetime of a hold."
    )
    return_policy: ReturnPolicy = Field(
        description="What a refund does when the points were already spent: `cap_at_zero`"
        " writes the rest off, `allow_negative` puts the member in debt."
    )
    member_transfers: bool = Field(
        strict=True, description="Whether keys with the redeem scope may transfer points."
    )
    max_backdate_days: int = Field(
        strict=True, ge=0, le=3650, description="How far in the past occurred_at may be."
    )
    expiry_policy: ExpiryPolicy = Field(
        description="When earned points lapse (applies to lots earned from now on)."
    )
    tiers: TierProgram | None = Field(description="The tier ladder; null: no tiers.")
    referrals: ReferralPolicy | None = Field(description="Referral rewards; null: no referrals.")

    @model_validator(mode="after")
    def _named(self) -> Self:
        if not self.name.strip():
            raise ValueError("name must not be blank")
        return self


class ProgramReplace(ProgramSettings):
    """`PUT /v1/program`: every setting; the read-only fields may be echoed unchanged."""

    id: int | None = Field(default=None, strict=True, description="Read-only.")
    slug: str | None = Field(default=None, strict=True, description="Read-only.")
    currency: str | None = Field(default=None, strict=True, description="Read-only.")
    rules_version: int | None = Field(default=None, strict=True, description="Read-only.")


class ProgramView(ProgramSettings):
    """A program: its settings and its read-only facts."""

    id: int
    slug: str
    currency: str = Field(description="ISO 4217 currency of orders; cannot change.")
    rules_version: int = Field(description="The current version of the earning rules.")


SETTINGS_FIELDS = tuple(ProgramSettings.model_fields)


def view(program: Program) -> dict[str, Any]:
    """The JSON of `GET /v1/program`."""
    settings = ProgramSettings(
        name=program.name,
        timezone=program.timezone,
        multiplier_mode=program.rules.multiplier_mode,
        point_value=program.point_value,
        pending_days=program.pending_days,
        hold_ttl_seconds=program.hold_ttl_seconds,
        return_policy=program.return_policy,
        member_transfers=program.member_transfers,
        max_backdate_days=program.max_backdate_days,
        expiry_policy=program.expiry_policy,
        tiers=program.tier_program,
        referrals=program.referral_policy,
    )
    return {
        "id": program.id,
        "slug": program.slug,
        "currency": program.currency,
        **settings.model_dump(mode="json"),
        "rules_version": program.rules.version,
    }


def etag(body: Any) -> str:
    """The entity tag of a program view (a digest of its canonical JSON)."""
    if isinstance(body, str | bytes):
        body = orjson.loads(body)
    digest = hashlib.sha256(orjson.dumps(body, option=orjson.OPT_SORT_KEYS)).hexdigest()
    return f'"{digest[:24]}"'


async def read(db: Session, program_id: int) -> dict[str, Any]:
    program = await programs.program_by_id(db, program_id)
    if program is None:  # the caller's own program: it cannot vanish (no deletes)
        raise errors.NotFound("program not found")
    return view(program)


def _check_read_only(request: ProgramReplace, current: dict[str, Any]) -> None:
    if request.currency is not None and request.currency != current["currency"]:
        raise errors.CurrencyImmutable(
            f"the program's currency is {current['currency']}; it cannot change"
        )
    for name in ("id", "slug"):
        value = getattr(request, name)
        if value is not None and value != current[name]:
            raise errors.ReadOnlyField(f"{name} is read-only: send {current[name]!r} or omit it")
    if request.rules_version is not None and request.rules_version != current["rules_version"]:
        raise errors.VersionMismatch(
            f"rules_version {request.rules_version} is not the current {current['rules_version']}"
        )


async def replace(
    session: Transaction,
    *,
    program_id: int,
    key: str,
    request: ProgramReplace,
    if_match: str | None,
) -> idempotency.Answer:
    """Replace the program's settings (under the idempotency `key`); the body is the new
    `ProgramView`."""
    print_ = fingerprint(
        "replace_program", {"request": request.model_dump(mode="json"), "if_match": if_match}
    )
    replay = await idempotency.claim(session, program_id, key, print_)
    if replay is not None:
        return replay
    await programs.lock_program(session, program_id)
    program = await programs.program_by_id(session, program_id)
    assert program is not None  # the caller's own program (programs are never deleted)
    current = view(program)
    rule_sets.check_if_match(if_match, etag(current))
    _check_read_only(request, current)
    settings = ProgramSettings.model_validate(request.model_dump(include=set(SETTINGS_FIELDS)))
    await _update(session, program_id, settings)
    rules = program.rules
    if (settings.timezone, settings.multiplier_mode) != (rules.timezone, rules.multiplier_mode):
        new = rule_sets.next_version(
            rules, timezone=settings.timezone, multiplier_mode=settings.multiplier_mode
        )
        await rule_sets.insert(session, program_id, new)
    changed = await programs.program_by_id(session, program_id)
    assert changed is not None
    return await idempotency.complete(session, program_id, key, 200, view(changed))


def _json(model: Any) -> Any:
    return None if model is None else model.model_dump(mode="json")


async def _update(session: Transaction, program_id: int, settings: ProgramSettings) -> None:
    await programs.update_program(
        session,
        program_id,
        {
            "name": settings.name,
            "timezone": settings.timezone,
            "multiplier_mode": settings.multiplier_mode,
            "point_value": settings.point_value,
            "pending_days": settings.pending_days,
            "hold_ttl_seconds": settings.hold_ttl_seconds,
            "return_policy": settings.return_policy,
            "member_transfers": settings.member_transfers,
            "max_backdate_days": settings.max_backdate_days,
            "expiry_policy": _expiry_json(settings),
            "tier_program": _json(settings.tiers),
            "referral_policy": _json(settings.referrals),
        },
    )


def _expiry_json(settings: ProgramSettings) -> Any:
    return settings.model_dump(mode="json", include={"expiry_policy"})["expiry_policy"]
