"""The real brokers queue actions are tested against: the machine's RabbitMQ and Redis, and a
Redis server of the test's own that it can restart."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from scheduler.settings import running_in_ci

RABBITMQ_URL = "amqp://guest:guest@127.0.0.1:5672/"
REDIS_URL = "redis://127.0.0.1:6379/0"
START_SECONDS = 20.0  # the longest a broker may take to start listening


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


@pytest.fixture
def rabbitmq() -> str:
    """The machine's RabbitMQ."""
    require("RabbitMQ", 5672)
    return RABBITMQ_URL


@pytest.fixture
def redis_url() -> str:
    """The machine's Redis."""
    require("Redis", 6379)
    return REDIS_URL


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
             "--appendonly", "no"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + START_SECONDS
        while not listening(self.port):
            assert self.process.poll() is None, "redis-server exited"
            assert time.monotonic() < deadline, "redis-server did not start listening"
            time.sleep(0.02)

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


@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    """A Redis server the test may restart."""
    if shutil.which("redis-server") is None:
        if running_in_ci():
            pytest.fail("redis-server is not installed and CI=true")
        pytest.skip("redis-server is not installed")
    server = RedisServer()
    server.start()
    yield server
    server.stop()
