"""Group commit: concurrent single writes of one worker reach the engine as one call.

Natural batching, as TigerBeetle does it: a request's event joins its program's queue; if fewer
than `max_in_flight` flushes of that program are running, one starts at once and takes the
whole queue (up to `max_batch` events); while it is in flight, new events queue, and the next
flush takes them all. One engine call and one commit then serve many requests, and a lone
request waits for no one. Every request still gets its own outcome.

A flush is one statement in autocommit (one round trip, one commit). Races the engine settles
by running again (a key or a new order claimed concurrently: unique_violation) are retried
here, a few times; a flush that fails otherwise (deadlock, lost connection) fails only its own
requests, with a retryable 503, and clients retry with their keys.

Settings (app.config): `group_commit` (on by default), `group_commit_max_batch`,
`group_commit_max_in_flight`, `group_commit_window_ms` (a pause before a flush takes the
queue, to gather more; 0 by default: natural batching needs none).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass

import asyncpg
import structlog

from app import errors
from app.db import Database
from app.ledger import engine
from app.ledger.engine import EngineCall, Outcome, PostingEvent

log = structlog.get_logger(__name__)

_RACE_RETRIES = 3


@dataclass(frozen=True)
class GroupCommit:
    enabled: bool = True
    max_batch: int = 256
    max_in_flight: int = 2
    window_seconds: float = 0.0


_Waiter = tuple[PostingEvent, "asyncio.Future[Outcome]"]


class Committer:
    """The group commit of one worker process (one per application)."""

    def __init__(self, database: Database, settings: GroupCommit) -> None:
        self.database = database
        self.settings = settings
        self._queues: dict[EngineCall, deque[_Waiter]] = {}
        self._flushing: dict[EngineCall, int] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._turns: dict[tuple[int, str], tuple[asyncio.Lock, int]] = {}

    @contextlib.asynccontextmanager
    async def member_turn(self, program_id: int, member: str) -> AsyncIterator[None]:
        """One member-dependent evaluation of a member at a time in this process: concurrent
        requests for one member would otherwise all read the same version and all but one
        come back stale, round after round. Nothing is held in the database meanwhile; across
        processes the engine's compare-and-set still decides."""
        key = (program_id, member)
        lock, users = self._turns.get(key, (asyncio.Lock(), 0))
        self._turns[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._turns[key]
            if users == 1:
                del self._turns[key]
            else:
                self._turns[key] = (lock, users - 1)

    async def post(self, call: EngineCall, event: PostingEvent) -> Outcome:
        """Post one event, together with whatever else is queued for the same program."""
        if not self.settings.enabled:
            return (await self.run(call, [event]))[0]
        future: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        self._queues.setdefault(call, deque()).append((event, future))
        if self._flushing.get(call, 0) < self.settings.max_in_flight:
            self._flushing[call] = self._flushing.get(call, 0) + 1
            task = asyncio.create_task(self._flush(call))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return await future

    async def run(self, call: EngineCall, events: list[PostingEvent]) -> list[Outcome]:
        """One engine call for `events` now (a batch or an import brings its own), retrying the
        races the engine leaves to its caller."""
        for attempt in range(1, _RACE_RETRIES + 1):
            try:
                async with self.database.single() as db:
                    return await engine.post_events(db, call, events)
            except asyncpg.UniqueViolationError:
                # a key or a new order claimed meanwhile: the next call sees the winner
                log.info("engine_race_retry", attempt=attempt, events=len(events))
        raise errors.ServiceUnavailable("the request collided with concurrent ones; retry it")

    async def _flush(self, call: EngineCall) -> None:
        queue = self._queues[call]
        try:
            while queue:
                if self.settings.window_seconds > 0:
                    await asyncio.sleep(self.settings.window_seconds)
                batch = [queue.popleft() for _ in range(min(len(queue), self.settings.max_batch))]
                try:
                    outcomes = await self.run(call, [event for event, _ in batch])
                except Exception as exc:  # the flush failed: only its own requests fail
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(exc)
                    continue
                for (_, future), outcome in zip(batch, outcomes, strict=True):
                    if not future.done():
                        future.set_result(outcome)
        finally:
            self._flushing[call] -= 1
            if not self._flushing[call]:
                # cancelled (shutdown) with requests still queued: they must not hang
                while queue:
                    _, future = queue.popleft()
                    if not future.done():
                        future.set_exception(errors.ServiceUnavailable("shutting down; retry"))
                del self._flushing[call]
                del self._queues[call]

    async def close(self) -> None:
        """Wait for the flushes in flight (at shutdown)."""
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
