"""Authentication: an API key -> the caller's key and program.

A key is looked up by its hash; keys and programs are cached in process for a few seconds
(`cache_ttl_seconds`), so a revoked key stops working within that time everywhere. A cached
program may lag a settings change by as long: postings carry the program's settings version,
and the engine refuses those computed under an older one as stale (they are computed again
from the current settings), so the cache can never make a posting use old rules.
"""

from __future__ import annotations

from dataclasses import dataclass

from app import errors
from app.db import Database
from app.programs import repository
from app.programs.cache import TtlCache
from app.programs.keys import hash_key
from app.programs.models import ApiKey, Caller, Program


@dataclass
class AuthCaches:
    keys: TtlCache[bytes, ApiKey]
    programs: TtlCache[int, Program]

    @classmethod
    def with_ttl(cls, ttl: float) -> AuthCaches:
        return cls(keys=TtlCache(ttl), programs=TtlCache(ttl))

    async def program(self, database: Database, program_id: int, *, fresh: bool = False) -> Program:
        """The program (cached; `fresh` reads it again, after a stale posting)."""

        async def load(key: int) -> Program | None:
            async with database.single() as db:
                return await repository.program_by_id(db, key)

        if fresh:
            self.programs.forget(program_id)
        program = await self.programs.get(program_id, load)
        if program is None:  # programs are never deleted
            raise errors.Unauthorized("unknown or revoked API key")
        return program

    async def authenticate(self, database: Database, api_key: str) -> Caller:
        async def load(secret_hash: bytes) -> ApiKey | None:
            async with database.single() as db:
                return await repository.active_key_by_hash(db, secret_hash)

        key = await self.keys.get(hash_key(api_key), load)
        if key is None:
            raise errors.Unauthorized("unknown or revoked API key")
        return Caller(key=key, program=await self.program(database, key.program_id))
