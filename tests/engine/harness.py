"""The engine's test harness: a node stepped by hand on the fake clock, running the loop that
production runs, and real HTTP receivers on loopback. Registered as a plugin by the suite's
conftest, so that its fixtures serve every test directory."""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import socket
import ssl
import threading
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol, TypeVar

import pytest
from flask import Flask

from scheduler.actions.http import HttpCaller
from scheduler.actions.notify import NotificationSender, SmtpServer
from scheduler.actions.registry import ActionRegistry, standard_actions
from scheduler.clock import FrozenClock
from scheduler.db.session import Database
from scheduler.engine.courier import AlertCourier
from scheduler.engine.loop import Cancellable, FiringLoop
from scheduler.engine.node import Engine
from scheduler.engine.options import engine_options
from scheduler.security.secrets import SecretBox
from scheduler.services.notifications import ChannelSender
from scheduler.settings import EngineSettings

T = TypeVar("T")
# The service's origin the alerts of nodes with a courier link to.
DASHBOARD_ORIGIN = "https://scheduler.example.com"

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

    def job(self, path: str = "/hook", **extra: Any) -> dict[str, Any]:
        """A one-shot job due at 12:00:10 (the fake clock starts at 12:00:00) that POSTs
        `hello {{parameters.who}}` to `path` on this receiver; `extra` replaces its fields."""
        job: dict[str, Any] = {
            "startTime": "2026-03-01T12:00:10Z",
            "action": {"type": "http", "request": {
                "uri": self.url(path), "method": "POST",
                "headers": {"Content-Type": "text/plain", "X-Run": "{{execution.id}}"},
                "body": "hello {{parameters.who}}"}},
            "parameters": {"who": "world"},
        }
        job.update(extra)
        return job

    def minutely(self, **extra: Any) -> dict[str, Any]:
        """A job calling this receiver every minute from 12:01, without retries; `extra`
        replaces its fields."""
        job = self.job(**{"startTime": "2026-03-01T12:01:00Z",
                          "recurrence": {"frequency": "minute"}, **extra})
        job["action"]["retryPolicy"] = {"retryType": "none"}
        return job

    def tags(self) -> list[str]:
        """The execution tag of every request received, in order."""
        return [request.header("x-ms-execution-tag") for request in self.requests]


SHUTDOWN_POLL_SECONDS = 0.01


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
    # shutdown() waits for the loop to notice it between polls: polled often, a receiver
    # stops at once rather than up to socketserver's default half a second later.
    thread = threading.Thread(target=server.serve_forever, args=(SHUTDOWN_POLL_SECONDS,),
                              daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def start_receiver() -> Iterator[Callable[..., Receiver]]:
    """Start receivers, stopped when the test ends: `start_receiver(tls=..., responder=...)`
    serves over TLS with a server context and answers every request by a responder."""
    with contextlib.ExitStack() as running:
        def start(tls: ssl.SSLContext | None = None,
                  responder: Callable[[Received], Answer] | None = None) -> Receiver:
            return running.enter_context(serve_receiver(tls, responder))

        yield start


@pytest.fixture
def receiver(start_receiver: Callable[..., Receiver]) -> Receiver:
    """A running receiver; every path answers 200 unless told otherwise."""
    return start_receiver()


@dataclass(order=True)
class _ManualTimer:
    due: datetime
    order: int
    callback: Callable[..., object] = field(compare=False)
    args: tuple[Any, ...] = field(compare=False)
    cancelled: bool = field(default=False, compare=False)

    def cancel(self) -> None:
        self.cancelled = True


class ManualTimers:
    """The loop's timers, run only when told, at the fake clock's time: no test sleeps for
    them."""

    def __init__(self, clock: FrozenClock) -> None:
        self.clock = clock
        self._timers: list[_ManualTimer] = []
        self._order = itertools.count()

    def call_later(self, delay: float, callback: Callable[..., object], *args: Any
                   ) -> Cancellable:
        """Set a timer `delay` seconds after the clock's time."""
        timer = _ManualTimer(self.clock.now() + timedelta(seconds=delay), next(self._order),
                             callback, args)
        heapq.heappush(self._timers, timer)
        return timer

    def run_elapsed(self) -> int:
        """Run, in order, every timer due by the clock's time; returns how many ran."""
        ran = 0
        while self._timers and self._timers[0].due <= self.clock.now():
            timer = heapq.heappop(self._timers)
            if not timer.cancelled:
                timer.callback(*timer.args)
                ran += 1
        return ran


class NodeDriver:
    """One engine node stepped by hand on the fake clock: the production loop
    (`FiringLoop`) and its node, the loop's timers run at the clock's time.

    `step` is a pass, then the timers that are due, then the calls' answers, then the
    recording, each the loop's own; the finer methods run them one at a time, for tests about
    what happens between them. Two drivers may share one event loop (`events`), so that two
    nodes work at once (`together`).
    """

    def __init__(self, node: Engine, clock: FrozenClock,
                 events: asyncio.AbstractEventLoop | None = None,
                 courier: AlertCourier | None = None) -> None:
        self.node, self.clock = node, clock
        self.timers = ManualTimers(clock)
        self.wake = asyncio.Event()
        self.loop = FiringLoop(node, node.options, clock, self.wake, self.timers,
                               courier=courier)
        self.owns_events = events is None
        self.events = events or asyncio.new_event_loop()
        self.begun = False

    def run(self, work: Coroutine[Any, Any, T]) -> T:
        """Run a coroutine on the driver's event loop until it is done."""
        return self.events.run_until_complete(work)

    def step(self) -> int:
        """One step at the clock's time; returns how many attempts it recorded."""
        return self.run(self.stepping())

    async def stepping(self) -> int:
        """`step`, as a coroutine: a pass, the timers that are due, the answers of the calls
        in flight, and the recording, if it is time to record."""
        before = self.attempts_recorded()
        await self.passing()
        self.timers.run_elapsed()
        await self.loop.settle()
        await self.loop.record_finished()
        return int(self.attempts_recorded() - before)

    async def beginning(self) -> None:
        """Start the node's heartbeat, once, and wait for its first beat, which takes over
        what dead nodes held."""
        if not self.begun:
            self.begun = True
            self.loop.begin()
            await self.loop.settle()

    async def passing(self) -> float:
        """One pass of the loop, its heartbeat begun first; how long it would sleep."""
        await self.beginning()
        return await self.loop.run_pass()

    def begin(self) -> None:
        """Start the node's heartbeat, its first beat done."""
        self.run(self.beginning())

    def run_pass(self) -> float:
        """One pass of the loop, alone; how long the loop would sleep after it."""
        return self.run(self.passing())

    def run_timers(self) -> int:
        """Run the loop's timers that are due (readied calls' instants, heartbeats, the
        recording delay), on the event loop; returns how many ran. What they start goes on
        while the event loop runs (`settle`)."""
        async def run_elapsed() -> int:
            return self.timers.run_elapsed()

        return self.run(run_elapsed())

    def settle(self) -> None:
        """Wait for the loop's work in the background and the answers of its calls."""
        self.run(self.loop.settle())

    def work(self) -> None:
        """Step until nothing more is to be done now, then wait for the work in the
        background (the courier's deliveries among it)."""
        while self.step():
            pass
        self.settle()

    def record(self) -> None:
        """Record what finished, if the loop finds it is time to."""
        self.run(self.loop.record_finished())

    def announce(self) -> None:
        """What the wake-up listener does when the API announces a change."""
        self.wake.set()

    @property
    def wants_a_pass(self) -> bool:
        """Whether the loop asked for another pass at once."""
        return self.wake.is_set()

    def stop(self) -> None:
        """Stop the node as production does: finish what it holds, take its heartbeat away
        (a call readied for an instant the clock has not reached would keep it waiting)."""
        stop = asyncio.Event()
        stop.set()
        self.begun = True
        self.run(self.loop.run(stop))

    def sample(self, name: str, **labels: str) -> float:
        """A metric's value in the node's registry (0 when it has no such sample yet)."""
        registry = self.node.metrics.registry
        assert registry is not None
        return registry.get_sample_value(name, labels) or 0.0

    def held_calls(self) -> tuple[float, float]:
        """How many calls the node's metrics say it holds, readied for their instant and in
        flight, as of its last pass or group of readied calls sent."""
        return (self.sample("scheduler_engine_readied_calls"),
                self.sample("scheduler_engine_inflight_calls"))

    def attempts_recorded(self) -> float:
        """How many attempts the node recorded, of every type and outcome."""
        registry = self.node.metrics.registry
        assert registry is not None
        return sum(sample.value for metric in registry.collect()
                   if metric.name == "scheduler_engine_attempts"
                   for sample in metric.samples if sample.name.endswith("_total"))

    def close(self) -> None:
        """Close the node's connections, and its event loop if it is the driver's own."""
        self.run(self.node.actions.close())
        if self.owns_events:
            self.events.close()


def together(*drivers: NodeDriver) -> list[int]:
    """One step of several nodes at once, on the first one's event loop (which they share);
    how many attempts each recorded."""
    async def all_step() -> list[int]:
        return list(await asyncio.gather(*(driver.stepping() for driver in drivers)))

    return drivers[0].run(all_step())


class MakeDriver(Protocol):
    """The `make_driver` fixture."""

    def __call__(self, node: str = "node-a", *, allow_private: bool = True,
                 caller: HttpCaller | None = None, actions: ActionRegistry | None = None,
                 box: SecretBox | None = None, app: Flask = ...,
                 events: asyncio.AbstractEventLoop | None = None,
                 alerts: ChannelSender | None = None, **options: Any) -> NodeDriver:
        """A node on the test database."""
        ...


@pytest.fixture
def make_driver(app: Flask, db: Database, clock: FrozenClock) -> Iterator[MakeDriver]:
    """Make engine nodes on the test database, each stepped by a `NodeDriver`: `node` names
    it; `caller` replaces its HTTP caller (by default one on the fake clock, which signed
    calls are stamped with), `actions` its whole registry; `box` its secret
    box (the app's by default); `events` an event loop to share; `alerts` what its courier
    sends alerts with (none: it has no courier, and delivers none); `options` replace its
    `EngineOptions`, which are production's for this database (but an attempt timeout of
    5 s, not `sole`, so that nodes may stand for others that died, and the node's name
    `node` unless `node_name` says another)."""
    made: list[NodeDriver] = []

    def make(node: str = "node-a", *, allow_private: bool = True,
             caller: HttpCaller | None = None, actions: ActionRegistry | None = None,
             box: SecretBox | None = None, app: Flask = app,
             events: asyncio.AbstractEventLoop | None = None,
             alerts: ChannelSender | None = None, **options: Any) -> NodeDriver:
        defaults = replace(engine_options(EngineSettings(), sqlite=db.is_sqlite),
                           timeout=5.0, sole=False, node_name=node)
        if actions is None:
            actions = standard_actions(caller or HttpCaller(allow_private_networks=allow_private,
                                                            clock=clock))
        runtime = app.extensions["scheduler"]
        engine = Engine(db, box or runtime.box, clock, node, actions,
                        replace(defaults, **options))
        courier = None if alerts is None else AlertCourier(
            alerts, clock, engine.metrics, public_url=DASHBOARD_ORIGIN)
        made.append(NodeDriver(engine, clock, events, courier))
        return made[-1]

    yield make
    for driver in reversed(made):  # a shared event loop is closed by its owner, made first
        driver.close()


@pytest.fixture
def driver(make_driver: MakeDriver) -> NodeDriver:
    """An engine node allowed to call loopback receivers."""
    return make_driver()


@pytest.fixture
def alerting(make_driver: MakeDriver, clock: FrozenClock) -> NodeDriver:
    """An engine node with a courier, sending alerts through the service's own sender."""
    return make_driver(alerts=NotificationSender(True, SmtpServer(), clock=clock))


@pytest.fixture
def other(make_driver: MakeDriver, driver: NodeDriver) -> NodeDriver:
    """A second engine node on the same database, on `driver`'s event loop, so that the two
    may work at once."""
    return make_driver("node-b", events=driver.events)
