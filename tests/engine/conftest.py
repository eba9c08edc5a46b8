"""An engine on the test database, a fake clock, and a real HTTP receiver on loopback."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from flask import Flask

from scheduler.actions.http import HttpCaller
from scheduler.actions.registry import ActionRegistry, standard_actions
from scheduler.clock import FrozenClock
from scheduler.db.session import Database
from scheduler.engine.node import Engine, EngineOptions

Answer = tuple[int, dict[str, str], bytes]


@dataclass
class Received:
    """One request the receiver got."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    certificate: bytes | None = None  # the DER client certificate presented over TLS

    def header(self, name: str, default: str = "") -> str:
        """A header's value, its name matched case-insensitively."""
        lowered = {key.lower(): value for key, value in self.headers.items()}
        return lowered.get(name.lower(), default)


@dataclass
class Receiver:
    """A loopback HTTP server that records requests and answers as told per path."""

    port: int
    requests: list[Received] = field(default_factory=list)
    answers: dict[str, Answer] = field(default_factory=dict)
    # Paths whose answer waits until their event is set (a slow target, held by the test).
    holds: dict[str, threading.Event] = field(default_factory=dict)
    responder: Callable[[Received], Answer] | None = None  # answers every request if set
    scheme: str = "http"

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        """A URL on this receiver."""
        return f"{self.scheme}://{host}:{self.port}{path}"

    def answer(self, request: Received) -> Answer:
        """The responder's answer, else the path's, else 200 `ok`."""
        if self.responder is not None:
            return self.responder(request)
        return self.answers.get(request.path, (200, {}, b"ok"))


class _Server(ThreadingHTTPServer):
    """A threaded HTTP server whose listen backlog takes a burst of connections at once
    (it is given to listen() inside the constructor, hence a class attribute); over TLS
    if given a server context."""

    request_queue_size = 1024
    daemon_threads = True

    def __init__(self, handler: type[BaseHTTPRequestHandler],
                 tls: ssl.SSLContext | None = None) -> None:
        super().__init__(("127.0.0.1", 0), handler)
        self.tls = tls

    def get_request(self) -> tuple[socket.socket, Any]:
        sock, address = self.socket.accept()
        if self.tls is None:
            return sock, address
        # The handshake happens in the handler's thread, so a refused client stalls nobody.
        return self.tls.wrap_socket(sock, server_side=True,
                                    do_handshake_on_connect=False), address

    def handle_error(self, request: Any, client_address: Any) -> None:
        if self.tls is None:  # over TLS, refused handshakes are part of the tests
            super().handle_error(request, client_address)


def _handler(state: Receiver) -> type[BaseHTTPRequestHandler]:
    """A request handler that records into `state` and answers as it says."""

    class Handler(BaseHTTPRequestHandler):
        def setup(self) -> None:
            if isinstance(self.request, ssl.SSLSocket):
                self.request.do_handshake()
            super().setup()

        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            certificate = self.connection.getpeercert(binary_form=True) \
                if isinstance(self.connection, ssl.SSLSocket) else None
            received = Received(self.command, self.path, dict(self.headers.items()),
                                self.rfile.read(length), certificate)
            state.requests.append(received)
            hold = state.holds.get(self.path)
            if hold is not None:
                hold.wait(60)
            status, headers, body = state.answer(received)
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _answer  # noqa: N815

        def log_message(self, *args: Any) -> None:
            pass

    return Handler


@contextlib.contextmanager
def serve_receiver(tls: ssl.SSLContext | None = None,
                   responder: Callable[[Received], Answer] | None = None) -> Iterator[Receiver]:
    """A running receiver until the block ends: over TLS with `tls`, answering by `responder`."""
    state = Receiver(0, responder=responder, scheme="http" if tls is None else "https")
    server = _Server(_handler(state), tls)
    state.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A running receiver; every path answers 200 unless told otherwise."""
    with serve_receiver() as state:
        yield state


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
        self.loop.run_until_complete(self.engine.actions.close())
        self.loop.close()


def make_engine(app: Flask, db: Database, clock: FrozenClock, allow_private: bool = True,
                node: str = "node-a", caller: HttpCaller | None = None,
                actions: ActionRegistry | None = None) -> EngineDriver:
    """An engine over the app's database and secret box; `caller` replaces its default HTTP
    caller, `actions` its whole registry."""
    runtime = app.extensions["scheduler"]
    options = EngineOptions(timeout=5.0)
    if actions is None:
        actions = standard_actions(caller or HttpCaller(allow_private_networks=allow_private))
    return EngineDriver(Engine(db, runtime.box, clock, node, actions, options), clock)


@pytest.fixture
def driver(app: Flask, db: Database, clock: FrozenClock) -> Iterator[EngineDriver]:
    """An engine allowed to call loopback receivers."""
    engine = make_engine(app, db, clock)
    yield engine
    engine.close()
