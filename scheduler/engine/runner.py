"""Running an engine node as a process: one per SQLite home, any number on PostgreSQL."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import signal
import uuid
from collections.abc import Callable, Iterator
from typing import IO

from scheduler.actions.http import HttpCaller, HttpRequest
from scheduler.actions.notify import NotificationSender, SmtpServer
from scheduler.actions.registry import standard_actions
from scheduler.clock import Clock, SystemClock
from scheduler.db.notify import WakeListener
from scheduler.db.outage import Outage, is_unavailable
from scheduler.db.session import Database
from scheduler.engine.courier import AlertCourier
from scheduler.engine.deadman import Pinger, dead_mans_switch
from scheduler.engine.loop import FiringLoop
from scheduler.engine.metrics import EngineMetrics
from scheduler.engine.node import Engine
from scheduler.engine.options import engine_options
from scheduler.engine.store import NodeNameTaken
from scheduler.security.secrets import SecretBox
from scheduler.services.public_url import public_url
from scheduler.settings import Settings, SettingsError, metrics_directory

log = logging.getLogger(__name__)

LOCK_FILE = "engine.lock"
# The engine's threads that use the database at once: a pass, the heartbeat, the recording of
# finished calls, the lease renewals; on PostgreSQL the wake-up listener holds one more.
ENGINE_CONNECTIONS = 5


@contextlib.contextmanager
def sqlite_engine_lock(settings: Settings, announce: IO[str]) -> Iterator[None]:
    """On SQLite only one engine may run: a second one waits here until the first is gone."""
    with open(settings.path(LOCK_FILE), "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print("another engine runs on this SQLite home; waiting for it to stop",
                  file=announce, flush=True)
            fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def run_engine(settings: Settings, ready_message: str, announce: IO[str],
               node_id: str | None = None, on_ready: Callable[[], None] | None = None
               ) -> None:
    """Run one engine node until SIGTERM or SIGINT, then hand back what it holds. The node
    is named `node_id` (by default `engine-` and a random part); `on_ready` runs once it
    has announced itself."""
    db = Database(settings.database_url, pool_size=ENGINE_CONNECTIONS, max_overflow=2)
    lock = sqlite_engine_lock(settings, announce) if db.is_sqlite else contextlib.nullcontext()
    try:
        with lock:
            asyncio.run(_serve(settings, db, ready_message, announce,
                               node_id or f"engine-{uuid.uuid4().hex[:12]}", on_ready))
    except NodeNameTaken as exc:  # a setting to change: said, without a traceback
        raise SettingsError(str(exc)) from None


async def _serve(settings: Settings, db: Database, ready_message: str, announce: IO[str],
                 node_id: str, on_ready: Callable[[], None] | None) -> None:
    stop = asyncio.Event()
    events = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        events.add_signal_handler(signum, stop.set)
    clock = SystemClock()
    caller = HttpCaller(settings.outbound.allow_private_networks,
                        max_connections_per_host=settings.outbound.max_connections_per_host,
                        aad_token_endpoint=settings.outbound.aad_token_endpoint, clock=clock)
    actions = standard_actions(
        caller, amqp_brokers=settings.broker_urls("amqp"),
        redis_brokers=settings.broker_urls("redis"),
        storage_queue_endpoint=settings.outbound.storage_queue_endpoint,
        service_bus_endpoint=settings.outbound.service_bus_endpoint, clock=clock)
    options = engine_options(settings.engine, sqlite=db.is_sqlite, outbound=settings.outbound,
                             public_url=public_url(settings))
    engine = Engine(db, SecretBox.from_file(settings.path(settings.security.secret_key_file)),
                    clock, node_id, actions, options,
                    EngineMetrics(shared=metrics_directory() is not None))
    wake = asyncio.Event()
    pings = ping_caller(clock)
    courier = AlertCourier(notification_sender(settings, clock), clock, engine.metrics,
                           public_url=options.public_url)
    firing = FiringLoop(engine, options, clock, wake,
                        dead_mans_switch=dead_mans_switch(settings.engine, http_pinger(pings)),
                        courier=courier)
    try:
        await claim_name(engine, clock, announce)
    except NodeNameTaken:
        db.dispose()
        raise
    listener = WakeListener(db, settings.home, wake)
    # Executions announced canceled: their calls are dropped at once.
    listener.on_canceled = firing.drop_canceled
    await listener.start()
    print(f"{ready_message}, node {engine.node_id} named {engine.name}", file=announce,
          flush=True)
    if on_ready is not None:
        on_ready()
    try:
        await firing.run(stop)
    finally:
        listener.stop()
        await actions.close()
        await pings.close()
        db.dispose()


async def claim_name(engine: Engine, clock: Clock, announce: IO[str]) -> None:
    """Begin the node's heartbeat under its name, which takes over what nodes gone before
    it held. While another live node runs under that name, wait for it to free, as the
    heartbeat of a node that just crashed ages out: up to `dead_after` and one heartbeat;
    then raise `NodeNameTaken`."""
    options = engine.options
    window = (options.dead_after + options.heartbeat).total_seconds()
    deadline = clock.monotonic() + window
    waiting = False
    outage = Outage(log, "engine start")
    while True:
        try:
            await asyncio.to_thread(engine.heartbeat, clock.now(), (), True)
            outage.succeeded()
            return
        except NodeNameTaken as exc:
            if clock.monotonic() >= deadline:
                raise
            if not waiting:
                print(f"engine node name {engine.name!r} is held by node {exc.holder}, whose "
                      "heartbeat is recent; waiting for that heartbeat to age out",
                      file=announce, flush=True)
                waiting = True
        except Exception as exc:
            if not is_unavailable(exc):
                raise
            # The database is away: the node waits for it, as a running node does; the
            # name's wait counts from when it answers again.
            await asyncio.sleep(outage.failed(exc))
            deadline = clock.monotonic() + window
            continue
        await asyncio.sleep(options.heartbeat.total_seconds())


def notification_sender(settings: Settings, clock: Clock) -> NotificationSender:
    """What sends notifications (alerts, and the test messages of channels), as the
    settings say."""
    smtp = settings.notifications
    return NotificationSender(
        settings.outbound.allow_private_networks,
        SmtpServer(host=smtp.smtp_host, port=smtp.smtp_port, starttls=smtp.smtp_starttls,
                   username=smtp.smtp_username, password=smtp.smtp_password,
                   default_sender=smtp.smtp_from, timeout=smtp.smtp_timeout_seconds,
                   ca_file=settings.path(smtp.smtp_ca_file) if smtp.smtp_ca_file else None),
        clock=clock)


def ping_caller(clock: Clock) -> HttpCaller:
    """The HTTP client of the dead man's switch. Its URL is the operator's own, so it may be
    on a private network whatever `outbound.allow_private_networks` lets jobs call."""
    return HttpCaller(allow_private_networks=True, max_connections_per_host=2, clock=clock)


def http_pinger(caller: HttpCaller) -> Pinger:
    """The dead man's switch's calls, made by `caller`: a GET, answered 2xx within the
    timeout, or else why not."""
    async def ping(url: str, timeout: float) -> str | None:
        outcome = await caller.call(HttpRequest("GET", url), timeout)
        if outcome.success:
            return None
        if outcome.status_code is not None:
            return f"answered {outcome.status_code} {outcome.reason}".rstrip()
        return outcome.message

    return ping
