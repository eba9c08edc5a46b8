"""An engine on the test database, a fake clock, and a real HTTP receiver on loopback."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from flask import Flask

from scheduler.actions.http import HttpCaller
from scheduler.clock import FrozenClock
from scheduler.db.session import Database
from scheduler.engine.loop import Engine, EngineOptions


@dataclass
class Received:
    """One request the receiver got."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """A loopback HTTP server that records requests and answers as told per path."""

    port: int
    requests: list[Received] = field(default_factory=list)
    answers: dict[str, tuple[int, dict[str, str], bytes]] = field(default_factory=dict)
    delays: dict[str, float] = field(default_factory=dict)

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        """A URL on this receiver."""
        return f"http://{host}:{self.port}{path}"


class _Server(ThreadingHTTPServer):
    """A threaded HTTP server whose listen backlog takes a burst of connections at once
    (it is given to listen() inside the constructor, hence a class attribute)."""

    request_queue_size = 1024
    daemon_threads = True


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A running receiver; every path answers 200 unless told otherwise."""
    state = Receiver(0)

    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            state.requests.append(Received(self.command, self.path, dict(self.headers.items()),
                                           self.rfile.read(length)))
            time.sleep(state.delays.get(self.path, 0.0))
            status, headers, body = state.answers.get(self.path, (200, {}, b"ok"))
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _answer  # noqa: N815

        def log_message(self, *args: Any) -> None:
            pass

    server = _Server(("127.0.0.1", 0), Handler)
    state.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()


@dataclass
class EngineDriver:
    """Drives an engine by hand: tick, then run what is due, at the fake clock's time."""

    engine: Engine
    clock: FrozenClock
    loop: asyncio.AbstractEventLoop = field(default_factory=asyncio.new_event_loop)

    def step(self) -> int:
        """One pass at the current time; returns how many attempts ran."""
        now = self.clock.now()
        self.engine.tick(now)
        return self.loop.run_until_complete(self.engine.run_due(now))

    def close(self) -> None:
        """Close the engine's connections and its loop."""
        self.loop.run_until_complete(self.engine.caller.close())
        self.loop.close()


def make_engine(app: Flask, db: Database, clock: FrozenClock, allow_private: bool = True,
                node: str = "node-a") -> EngineDriver:
    """An engine over the app's database and secret box."""
    runtime = app.extensions["scheduler"]
    options = EngineOptions(timeout=5.0)
    return EngineDriver(Engine(db, runtime.box, clock, node,
                               HttpCaller(allow_private_networks=allow_private), options), clock)


@pytest.fixture
def driver(app: Flask, db: Database, clock: FrozenClock) -> Iterator[EngineDriver]:
    """An engine allowed to call loopback receivers."""
    engine = make_engine(app, db, clock)
    yield engine
    engine.close()
