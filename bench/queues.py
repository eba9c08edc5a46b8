"""The brokers side of `bench/fire.py`'s queues phase: the stream and queue the engine's
messages go to, how fast they fill, and the raw ceiling of the same client libraries
publishing alone in this process.

Rates are first to last message seen at the broker: the stream's length (`XLEN`) or the
queue's message count (a passive `queue.declare`), polled every few milliseconds.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, cast

import aiormq
import redis
import redis.asyncio
from aiormq.channel import Channel
from pamqp.commands import Basic

from scheduler.actions.redis import MAX_CONNECTIONS

REDIS_URL = "redis://127.0.0.1:6379/0"
RABBITMQ_URL = "amqp://guest:guest@127.0.0.1:5672/"
POLL_SECONDS = 0.005
RAW_CONCURRENCY = 200  # publishes in flight at once in the raw ceilings
REDIS_MAX_CONNECTIONS = MAX_CONNECTIONS


@dataclass
class Fill:
    """How a target filled: messages seen, and when (wall clock) the first and the last
    were."""

    count: int
    first_at: float
    last_at: float

    @property
    def per_second(self) -> float:
        """Messages per second, first to last."""
        span = self.last_at - self.first_at
        return self.count / span if span > 0 else 0.0


class RedisTarget:
    """A stream of the run's own on the machine's Redis, deleted at the end."""

    def __init__(self, url: str = REDIS_URL) -> None:
        self.url = url
        self.stream = f"bench-{uuid.uuid4().hex[:12]}"
        self.client = redis.Redis.from_url(url, decode_responses=True)

    def count(self) -> int:
        """Entries in the stream now."""
        return int(self.client.xlen(self.stream))

    def tags(self) -> list[str]:
        """The execution tag of every entry."""
        entries = cast("list[tuple[str, dict[str, str]]]", self.client.xrange(self.stream))
        return [fields.get("x-ms-execution-tag", "") for _id, fields in entries]

    def reset(self) -> None:
        """Empty the stream."""
        self.client.delete(self.stream)

    def close(self) -> None:
        """Delete the stream."""
        self.reset()
        self.client.close()


class RabbitTarget:
    """A durable queue of the run's own on the machine's RabbitMQ, deleted at the end."""

    def __init__(self, url: str = RABBITMQ_URL) -> None:
        self.url = url
        self.queue = f"bench-{uuid.uuid4().hex[:12]}"
        self.loop = asyncio.new_event_loop()
        self.connection = self.loop.run_until_complete(aiormq.connect(url))
        self.channel = self.loop.run_until_complete(self.connection.channel())
        self.loop.run_until_complete(self.channel.queue_declare(self.queue, durable=True))

    def count(self) -> int:
        """Messages on the queue now."""
        declared = self.loop.run_until_complete(
            self.channel.queue_declare(self.queue, passive=True))
        return int(declared.message_count or 0)

    def tags(self) -> list[str]:
        """Take every message off the queue; their execution tags."""
        async def take() -> list[str]:
            found: list[str] = []
            while True:
                message = await self.channel.basic_get(self.queue, no_ack=True)
                if isinstance(message.delivery, Basic.GetEmpty):
                    return found
                headers = message.header.properties.headers or {}
                found.append(str(headers.get("x-ms-execution-tag", "")))
        return self.loop.run_until_complete(take())

    def reset(self) -> None:
        """Empty the queue."""
        self.loop.run_until_complete(self.channel.queue_purge(self.queue))

    def close(self) -> None:
        """Delete the queue and close the connection."""
        try:
            self.loop.run_until_complete(self.channel.queue_delete(self.queue))
            self.loop.run_until_complete(self.connection.close())
        finally:
            self.loop.close()


def watch_fill(count: Callable[[], int], expected: int, deadline: float) -> Fill:
    """Poll a target until it holds `expected` messages or the deadline passes (monotonic);
    the fill's times are wall-clock (`time.time`), to compare with when jobs were due."""
    first_at = last_at = 0.0
    seen = 0
    while time.monotonic() < deadline:
        now, seen = time.time(), count()
        if seen and not first_at:
            first_at = now
        if seen >= expected:
            last_at = now
            break
        time.sleep(POLL_SECONDS)
    return Fill(seen, first_at, last_at or time.time())


async def _in_flight(count: int, send: Callable[[int], Awaitable[Any]]) -> None:
    """`send(n)` for n in range(count), `RAW_CONCURRENCY` at a time."""
    numbers = iter(range(count))

    async def worker() -> None:
        for number in numbers:
            await send(number)
    await asyncio.gather(*(worker() for _ in range(RAW_CONCURRENCY)))


async def redis_blast(url: str, stream: str, count: int) -> None:
    """`count` XADDs of one client with a pool as large as the engine's, like the engine's
    entries."""
    pool = redis.asyncio.BlockingConnectionPool.from_url(
        url, max_connections=REDIS_MAX_CONNECTIONS, timeout=None)
    client = redis.asyncio.Redis(connection_pool=pool)
    try:
        await _in_flight(count, lambda n: client.xadd(stream, {
            "message": "bench", "x-ms-execution-tag": f"raw-{n}"}))
    finally:
        await client.aclose()


async def amqp_blast(url: str, queue: str, count: int) -> None:
    """`count` persistent, mandatory publishes on one confirming channel, each awaiting its
    confirmation but not its write to the socket, like the engine's."""
    connection = await aiormq.connect(url)
    try:
        channel = cast(Channel, await connection.channel(publisher_confirms=True))

        async def publish(number: int) -> None:
            confirmation = await channel.basic_publish(
                b"bench", routing_key=queue, mandatory=True,
                properties=Basic.Properties(headers={"x-ms-execution-tag": f"raw-{number}"},
                                            message_id=f"raw-{number}", delivery_mode=2),
                wait=False)
            assert isinstance(confirmation, Basic.Ack)
        await _in_flight(count, publish)
    finally:
        await connection.close()


def raw_ceiling(blast: Callable[[], Coroutine[Any, Any, None]], count: Callable[[], int],
                expected: int, deadline: float) -> Fill:
    """Run a raw blast on a thread of its own, watched as the engine's messages are: its
    fill, first to last message at the broker."""
    failed: list[BaseException] = []

    def run() -> None:
        try:
            asyncio.run(blast())
        except BaseException as exc:  # reported below, on the watching thread
            failed.append(exc)
    thread = threading.Thread(target=run, name="raw-blast")
    thread.start()
    fill = watch_fill(count, expected, deadline)
    thread.join()
    if failed:
        raise failed[0]
    return fill
