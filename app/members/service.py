"""Enrolling and reading members."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from app import errors
from app.ledger import idempotency, posting
from app.ledger.fingerprint import fingerprint
from app.members import repository
from app.members.schemas import EnrollMember
from app.programs.models import Program
from app.referrals import service as referrals


async def enroll(
    session: AsyncSession, *, program: Program, key: str, request: EnrollMember
) -> idempotency.StoredResponse:
    """Enrol a member: 201 when new, 200 with the existing member when it is already there.

    With a `referral_code`, the new member is recorded as referred by the code's owner in the
    same database transaction (a refused referral fails the whole enrolment)."""
    print_ = fingerprint("enroll_member", _fingerprinted(request))
    replay = await idempotency.claim(session, program.id, key, print_)
    if replay is not None:
        return replay
    member_id, created = await repository.enroll(
        session,
        program_id=program.id,
        external_id=request.external_id,
        birthday=request.birthday,
        attributes=request.stored_attributes(),
    )
    if request.referral_code is not None:
        await referrals.link_at_enrolment(
            session,
            program=program,
            member_id=member_id,
            created=created,
            code=request.referral_code,
        )
    member = await repository.find(session, program_id=program.id, external_id=request.external_id)
    assert member is not None  # enrolled above, in this transaction
    return await idempotency.complete(
        session, program.id, key, 201 if created else 200, member.model_dump(mode="json")
    )


_ADDED_LATER = ("email", "phone", "referral_code")


def _fingerprinted(request: EnrollMember) -> dict[str, object]:
    """The request as fingerprinted; fields added later count only when given, so keys used
    before they existed still replay."""
    unset = {name for name in _ADDED_LATER if getattr(request, name) is None}
    return request.model_dump(mode="json", exclude=unset)


async def get(conn: AsyncConnection, *, program: Program, external_id: str) -> str:
    """The member as of now, as JSON text (one round trip): due pending points and expired
    holds are released first, so a read never shows what the worker has not got round to."""
    view: str | None = await posting.fetch_value(
        conn, "SELECT api_member_view($1, $2)::text", program.id, external_id
    )
    if view is None:
        raise errors.MemberNotFound(f"no member {external_id!r} in this program")
    return view
