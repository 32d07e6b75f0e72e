"""Who is calling: the API key of a request, authenticated, with the scopes the endpoint needs.

Missing or unknown key: 401. Key without the endpoint's scope: 403. Everything a caller
touches is then looked up inside its own program, so another program's ids are a 404.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from app import errors
from app.api.deps import Db
from app.programs.auth import AuthCaches
from app.programs.models import Caller, Scope

bearer = HTTPBearer(auto_error=False, description="An API key of the program: `plk_…`")


async def get_caches(request: Request) -> AuthCaches:
    caches: AuthCaches = request.app.state.auth_caches
    return caches


Caches = Annotated[AuthCaches, Depends(get_caches)]


def require(*scopes: Scope) -> Callable[..., Awaitable[Caller]]:
    """Dependency: an authenticated caller whose key carries every one of `scopes` (or
    `admin`)."""

    async def dependency(
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
        caches: Caches,
        database: Db,
    ) -> Caller:
        if credentials is None or not credentials.credentials:
            raise errors.Unauthorized("send Authorization: Bearer <api key>")
        caller = await caches.authenticate(database, credentials.credentials)
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
