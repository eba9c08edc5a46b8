"""What the queue actions' tests share besides fixtures: where the machine's brokers listen,
a Redis server of the test's own, Azurite's account, the service the tests drive, and how
queues are made, emptied and deleted."""

from __future__ import annotations

import asyncio
import os
import selectors
import shutil
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, Protocol

import aiormq
import pytest
from pamqp.commands import Basic

from scheduler.clock import FrozenClock
from scheduler.settings import running_in_ci
from tests.engine.harness import NodeDriver
from tests.support import JOBS, Tenant

RABBITMQ_URL = "amqp://guest:guest@127.0.0.1:5672/"
REDIS_URL = "redis://127.0.0.1:6379/0"
START_SECONDS = 20.0  # the longest a broker may take to start listening
AZURITE = Path(__file__).resolve().parents[2] / ".tools" / "node_modules" / ".bin" / \
    "azurite-queue"
# Azurite's one account and its published key (the emulator's, not a secret).
AZURITE_ACCOUNT = "devstoreaccount1"
AZURITE_KEY = ("Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/"
               "KBHBeksoGMGw==")


def listening(port: int, host: str = "127.0.0.1") -> bool:
    """Whether something accepts connections on the port."""
    try:
        with socket.create_connection((host, port), timeout=2):
            return True
    except OSError:
        return False


def require(name: str, port: int) -> None:
    """Skip without the service, except under CI, where a missing one is a failure."""
    if listening(port):
        return
    message = f"{name} is not reachable at 127.0.0.1:{port}"
    if running_in_ci():
        pytest.fail(f"{message} and CI=true")
    pytest.skip(message)


def wait_for_output(process: subprocess.Popen[bytes], marker: bytes, seconds: float) -> None:
    """Block until the process prints `marker` (it says it is ready), then drain the rest of
    its output on a thread, so that it never blocks writing to a full pipe."""
    assert process.stdout is not None
    stream, seen = process.stdout, b""
    deadline = time.monotonic() + seconds
    with selectors.DefaultSelector() as selector:
        selector.register(stream, selectors.EVENT_READ)
        while marker not in seen:
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"no {marker!r} within {seconds:g} s: {seen[-500:]!r}"
            if selector.select(remaining):
                chunk = os.read(stream.fileno(), 65536)
                assert chunk, f"exited before printing {marker!r}: {seen[-500:]!r}"
                seen += chunk
    threading.Thread(target=lambda: stream.read(), daemon=True).start()


def free_port() -> int:
    """A loopback port nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class RedisServer:
    """A `redis-server` of the test's own, on a port of its own, that keeps nothing on disk."""

    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """Where it listens."""
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Start it and wait until it listens."""
        binary = shutil.which("redis-server")
        assert binary is not None
        self.process = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        wait_for_output(self.process, b"Ready to accept connections", START_SECONDS)

    def stop(self) -> None:
        """Kill it, as a crash would, and wait until it is gone."""
        if self.process is not None:
            self.process.kill()
            self.process.wait(10)
            self.process = None

    def restart(self) -> None:
        """Kill it and start it again on the same port: every connection to it is lost."""
        self.stop()
        self.start()


@dataclass(frozen=True)
class Azurite:
    """A running Azurite queue service."""

    port: int

    @property
    def endpoint(self) -> str:
        """The storage queue endpoint template the engine is given."""
        return f"http://127.0.0.1:{self.port}/{{account}}"

    @property
    def connection_string(self) -> str:
        """How the Azure SDK reaches it."""
        return (f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};"
                f"AccountKey={AZURITE_KEY};"
                f"QueueEndpoint=http://127.0.0.1:{self.port}/{AZURITE_ACCOUNT};")


@dataclass
class Service:
    """The API with brokers configured, one tenant with collection jc1, and an engine node."""

    tenant: Tenant
    driver: NodeDriver
    clock: FrozenClock

    def put(self, job_id: str, action: dict[str, Any], **extra: Any) -> None:
        """Create a job due in ten seconds."""
        job = {"startTime": "2026-03-01T12:00:10Z", "action": action, **extra}
        response = self.tenant.call("PUT", f"{JOBS}/{job_id}", job)
        assert response.status_code == 201, response.data

    def fire(self, seconds: float = 10) -> int:
        """Move the clock on and make one step."""
        self.clock.advance(timedelta(seconds=seconds))
        return self.driver.step()

    def history(self, job_id: str) -> list[dict[str, Any]]:
        """The job's history, oldest first."""
        entries = self.tenant.call("GET", f"{JOBS}/{job_id}/history").get_json()
        return list(reversed(entries))

    def executions(self, job_id: str) -> list[dict[str, Any]]:
        """The job's executions, oldest first."""
        found = self.tenant.call("GET", f"{JOBS}/{job_id}/executions").get_json()
        return list(reversed(found))


class MakeService(Protocol):
    """The `make_service` fixture."""

    def __call__(self, brokers: dict[str, str] | None = None, **options: Any) -> Service:
        """The API and an engine node that both know these brokers (name to URL)."""
        ...


async def declare_queue(url: str, name: str, arguments: dict[str, Any] | None = None) -> None:
    """Declare a durable queue (with RabbitMQ's queue arguments, if any)."""
    connection = await aiormq.connect(url)
    try:
        channel = await connection.channel()
        await channel.queue_declare(name, durable=True, arguments=arguments)
    finally:
        await connection.close()


async def delete_queue(url: str, name: str) -> None:
    """Delete a queue."""
    connection = await aiormq.connect(url)
    try:
        channel = await connection.channel()
        await channel.queue_delete(name)
    finally:
        await connection.close()


def take_messages(url: str, name: str) -> list[aiormq.abc.DeliveredMessage]:
    """Every message on the queue, acknowledged."""
    async def take() -> list[aiormq.abc.DeliveredMessage]:
        connection = await aiormq.connect(url)
        try:
            channel = await connection.channel()
            found = []
            while True:
                message = await channel.basic_get(name, no_ack=True)
                if isinstance(message.delivery, Basic.GetEmpty):
                    break
                found.append(message)
            return found
        finally:
            await connection.close()
    return asyncio.run(take())
