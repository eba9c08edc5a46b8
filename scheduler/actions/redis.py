"""`redis` actions: a message appended to a Redis stream (`XADD`) of a configured broker.

Each broker (`[brokers.NAME]`, a `redis://` or `rediss://` URL) gets one client, and its
pool of up to 50 connections is shared by every job that names it. A connection the server dropped
(a restart) is replaced when the next command finds it gone: the client makes a command
that lost its connection again, on a new one, up to three times before the attempt fails
(an entry may then be appended twice; readers de-duplicate by its execution tag).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from scheduler.actions.base import ExecutionContext, Outcome
from scheduler.actions.placeholders import fill_text
from scheduler.actions.tags import identification
from scheduler.domain.jobs import Action, RedisAction

MAX_CONNECTIONS = 50  # per broker and engine node


@dataclass(frozen=True, slots=True)
class StreamEntry:
    """One entry to append: its broker, stream and fields."""

    broker: str
    stream: str
    fields: dict[str, str]


class RedisExecutor:
    """Runs `redis` actions on the brokers configured by name (name -> URL)."""

    TYPES = ("redis",)

    def __init__(self, brokers: Mapping[str, str]) -> None:
        self.urls = dict(brokers)
        self._clients: dict[str, Redis] = {}

    def prepare(self, action: Action, context: ExecutionContext) -> StreamEntry | Outcome:
        """The entry to append; one naming a broker this node does not know fails."""
        if not isinstance(action, RedisAction):
            return Outcome(False, f"Redis Action - a {action.kind} action is not a message")
        broker, stream = action.broker, action.stream
        if broker not in self.urls:
            return Outcome(False, f"Redis Action - no broker named '{broker}' is configured "
                                  "on this engine node")
        entry = {"message": fill_text(action.message, context),
                 **identification(context)}
        return StreamEntry(broker, stream, entry)

    def submit(self, entry: StreamEntry, timeout: float) -> asyncio.Future[Any]:
        """Append the entry; the future holds the id Redis gave it."""
        return asyncio.ensure_future(self._append(entry, timeout))

    async def _append(self, entry: StreamEntry, timeout: float) -> str:
        async with asyncio.timeout(timeout):
            answer = await self._client(entry.broker).xadd(
                entry.stream, entry.fields)  # type: ignore[arg-type]
        return answer.decode() if isinstance(answer, bytes) else str(answer)

    def _client(self, broker: str) -> Redis:
        client = self._clients.get(broker)
        if client is None:
            lost = [RedisConnectionError, RedisTimeoutError]
            retry = Retry(ExponentialBackoff(cap=1.0, base=0.05), retries=3,
                          supported_errors=tuple(lost))
            # A blocking pool: messages due at once wait for one of its connections, where
            # the default pool refuses any beyond its size.
            pool = BlockingConnectionPool.from_url(
                self.urls[broker], max_connections=MAX_CONNECTIONS, timeout=None,
                retry=retry, retry_on_error=lost, health_check_interval=30)
            client = Redis(connection_pool=pool)
            self._clients[broker] = client
        return client

    def outcome(self, entry: StreamEntry, done: asyncio.Future[Any], timeout: float
                ) -> Outcome:
        """The entry's id, or why it was not appended."""
        where = f"stream '{entry.stream}' on broker '{entry.broker}'"
        if done.cancelled():
            return Outcome(False, f"Redis Action - Message to {where} failed: the attempt "
                                  "was cancelled")
        exc = done.exception()
        if isinstance(exc, TimeoutError):
            return Outcome(False, f"Redis Action - Message to {where} failed: no answer "
                                  f"within {timeout:g} s")
        if exc is not None:
            reason = str(exc) if isinstance(exc, RedisError | OSError) else repr(exc)
            return Outcome(False, f"Redis Action - Message to {where} failed: {reason}")
        entry_id = str(done.result())
        return Outcome(True, f"Redis Action - Message added to {where} as {entry_id}",
                       {"broker": entry.broker, "stream": entry.stream, "id": entry_id})

    def describe(self, entry: StreamEntry) -> Mapping[str, Any]:
        """The entry as appended."""
        return {"broker": entry.broker, "stream": entry.stream, "fields": dict(entry.fields)}

    async def close(self) -> None:
        """Close every broker's connections."""
        clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            await client.aclose()
