"""Authentication: `Authorization: Bearer <api key>` → the caller's key and program.

Missing or unknown key: 401. Key without the endpoint's scope: 403. Everything a caller
touches is then looked up inside its own program, so another program's ids are a 404.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from app import errors
from app.db import get_database
from app.programs import repository
from app.programs.cache import TtlCache
from app.programs.keys import hash_key
from app.programs.models import ApiKey, Caller, Program, Scope

bearer = HTTPBearer(auto_error=False, description="An API key of the program: `plk_…`")


@dataclass
class AuthCaches:
    keys: TtlCache[bytes, ApiKey]
    programs: TtlCache[int, Program]

    @classmethod
    def with_ttl(cls, ttl: float) -> AuthCaches:
        return cls(keys=TtlCache(ttl), programs=TtlCache(ttl))


async def authenticate(
    request: Request, credentials: HTTPAuthorizationCredentials | None
) -> Caller:
    if credentials is None or credentials.scheme.lower() != "bearer" or not credentials.credentials:
        raise errors.Unauthorized("send Authorization: Bearer <api key>")
    caches: AuthCaches = request.app.state.auth_caches
    database = get_database(request)

    async def load_key(secret_hash: bytes) -> ApiKey | None:
        async with database.autocommit.connect() as conn:
            return await repository.active_key_by_hash(conn, secret_hash)

    async def load_program(program_id: int) -> Program | None:
        async with database.autocommit.connect() as conn:
            return await repository.program_by_id(conn, program_id)

    key = await caches.keys.get(hash_key(credentials.credentials), load_key)
    if key is None:
        raise errors.Unauthorized("unknown or revoked API key")
    program = await caches.programs.get(key.program_id, load_program)
    if program is None:
        raise errors.Unauthorized("unknown or revoked API key")
    return Caller(key=key, program=program)


def require(*scopes: Scope) -> Callable[..., Awaitable[Caller]]:
    """Dependency: an authenticated caller whose key carries every one of `scopes` (or
    `admin`)."""

    async def dependency(
        request: Request,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    ) -> Caller:
        caller = await authenticate(request, credentials)
        missing = [scope.value for scope in scopes if not caller.key.allows(scope)]
        if missing:
            raise errors.Forbidden(f"this endpoint needs the scope(s): {', '.join(missing)}")
        return caller

    return dependency


CanEarn = Annotated[Caller, Depends(require(Scope.EARN))]
CanRedeem = Annotated[Caller, Depends(require(Scope.REDEEM))]
CanRead = Annotated[Caller, Depends(require(Scope.READ))]
IsAdmin = Annotated[Caller, Depends(require(Scope.ADMIN))]
CanEarnAndRedeem = Annotated[Caller, Depends(require(Scope.EARN, Scope.REDEEM))]
