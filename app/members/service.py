"""Enrolling and reading members."""

from __future__ import annotations

from typing import Any

from app import errors
from app.db import Session, Transaction
from app.domain.referrals import code_for
from app.ledger import idempotency
from app.ledger.idempotency import fingerprint
from app.members import repository
from app.members.schemas import EnrollMember
from app.programs.models import Program
from app.referrals import service as referrals


def shown(member: dict[str, Any]) -> dict[str, Any]:
    """The member as the API shows it: with its referral code (a function of its id, never
    stored: app.domain.referrals), without its internal id."""
    view = {key: value for key, value in member.items() if key != "id"}
    view["referral_code"] = code_for(member["id"])
    return view


async def enroll(
    tx: Transaction, *, program: Program, key: str, request: EnrollMember
) -> idempotency.Answer:
    """Enrol a member: 201 when new. An enrolled member is updated with what the request gives
    (PATCH semantics: a new birthday replaces the old one, attributes, e-mail and phone are
    merged key by key) and answered with 200, never silently left as it was.

    With a `referral_code`, the new member is recorded as referred by the code's owner in the
    same database transaction (a refused referral fails the whole enrolment)."""
    print_ = fingerprint("enroll_member", _fingerprinted(request))
    replay = await idempotency.claim(tx, program.id, key, print_)
    if replay is not None:
        return replay
    member_id, created = await repository.enroll(
        tx,
        program_id=program.id,
        external_id=request.external_id,
        birthday=request.birthday,
        attributes=request.stored_attributes(),
    )
    if request.referral_code is not None:
        await referrals.link_at_enrolment(
            tx, program=program, member_id=member_id, created=created, code=request.referral_code
        )
    member = await repository.view(tx, program_id=program.id, external_id=request.external_id)
    assert member is not None  # enrolled above, in this transaction
    return await idempotency.complete(tx, program.id, key, 201 if created else 200, shown(member))


_ADDED_LATER = ("email", "phone", "referral_code")


def _fingerprinted(request: EnrollMember) -> dict[str, object]:
    """The request as fingerprinted; fields added later count only when given, so keys used
    before they existed still replay."""
    unset = {name for name in _ADDED_LATER if getattr(request, name) is None}
    return request.model_dump(mode="json", exclude=unset)


async def get(db: Session, *, program: Program, external_id: str) -> dict[str, Any]:
    """The member as of now (one round trip): due pending points and expired holds are
    released first, so a read never shows what the worker has not got round to."""
    member = await repository.view(db, program_id=program.id, external_id=external_id)
    if member is None:
        raise errors.MemberNotFound.named(external_id)
    return shown(member)
