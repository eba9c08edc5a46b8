"""Waking engines when jobs change, so a job due sooner than their next wake-up fires on time.

On SQLite (one engine per home) the API sends a datagram to a socket in the home; on
PostgreSQL it sends `NOTIFY`, which reaches every engine node. Engines also wake on their own
at least every `engine.max_sleep_seconds`, so a lost signal only delays, never loses, a job.

A signal may name canceled executions (`c:ID,ID`): the node running one of them drops its
attempt at once. Engines check what a signal says against the database before acting on
it, and a node that misses one finds out when it next renews its leases.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import select
import socket
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import psycopg
from sqlalchemy import event, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from scheduler.db.outage import Outage
from scheduler.db.session import CONNECT_TIMEOUT, Database

log = logging.getLogger(__name__)

SOCKET_NAME = "engine.wake"
CHANNEL = "scheduler_jobs_changed"


CANCELED_PREFIX = "c:"
_EXECUTION_ID = re.compile(r"[0-9a-f]{32}")
_MAX_IDS_PER_SIGNAL = 200  # a NOTIFY payload holds under 8,000 bytes


def announce_jobs_changed(db: Database, home: Path) -> None:
    """Tell the engines that jobs changed; call after the change is committed."""
    _announce(db, home, "!")


def announce_on_commit(session: Session, home: Path, canceled: Iterable[str] = ()) -> None:
    """Tell the engines, once the session's transaction commits, that jobs or executions
    changed (naming those `canceled`). On PostgreSQL the `NOTIFY` goes in the transaction
    itself, which delivers it at commit and costs no connection of its own."""
    payloads = _canceled_payloads(list(canceled)) or ["!"]
    if session.get_bind().dialect.name == "postgresql":
        for payload in payloads:
            session.execute(_NOTIFY, {"channel": CHANNEL, "payload": payload})
        return

    def send(_session: Session) -> None:
        for payload in payloads:
            _send_datagram(home, payload)

    event.listen(session, "after_commit", send, once=True)


_NOTIFY = text("SELECT pg_notify(:channel, :payload)")


def notify_canceled(session: Session, canceled: list[str]) -> None:
    """Tell the other engine nodes of a PostgreSQL database, once the session's transaction
    commits, that these executions were canceled: the node running one drops it. (On SQLite
    the one engine canceled them itself.)"""
    if session.get_bind().dialect.name == "postgresql":
        for payload in _canceled_payloads(canceled):
            session.execute(_NOTIFY, {"channel": CHANNEL, "payload": payload})


def _canceled_payloads(ids: list[str]) -> list[str]:
    """The signals that name these canceled executions, as many as they take."""
    return [CANCELED_PREFIX + ",".join(ids[start:start + _MAX_IDS_PER_SIGNAL])
            for start in range(0, len(ids), _MAX_IDS_PER_SIGNAL)]


def _announce(db: Database, home: Path, payload: str) -> None:
    if db.is_sqlite:
        _send_datagram(home, payload)
        return
    with db.engine.connect() as conn:
        conn.execute(_NOTIFY, {"channel": CHANNEL, "payload": payload})
        conn.commit()


def _send_datagram(home: Path, payload: str) -> None:
    """Signal the SQLite home's engine through its socket."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.setblocking(False)
        with contextlib.suppress(OSError):  # no engine listening: it wakes on its own
            sock.sendto(payload.encode(), str(home / SOCKET_NAME))


def canceled_in(payload: str) -> list[str]:
    """The execution ids a signal names as canceled; none for a plain wake-up."""
    if not payload.startswith(CANCELED_PREFIX):
        return []
    return [part for part in payload[len(CANCELED_PREFIX):].split(",")
            if _EXECUTION_ID.fullmatch(part)]


class _Datagrams(asyncio.DatagramProtocol):
    def __init__(self, listener: WakeListener) -> None:
        self.listener = listener

    def datagram_received(self, data: bytes, addr: object) -> None:
        self.listener.received(data.decode("ascii", errors="replace"))


class WakeListener:
    """Sets `wake` whenever the API announces a change, and hands the ids of canceled
    executions to `on_canceled`, if set, on the event loop."""

    def __init__(self, db: Database, home: Path, wake: asyncio.Event) -> None:
        self.db, self.home, self.wake = db, home, wake
        self.on_canceled: Callable[[list[str]], None] | None = None
        self._transport: asyncio.DatagramTransport | None = None
        self._stopping = threading.Event()
        # Written to on stop, so the listening thread's `select` returns at once.
        self._stop_reader, self._stop_writer = socket.socketpair()
        self._thread: threading.Thread | None = None

    async def start(self) -> None:
        """Listen on the home's socket (SQLite) or the notification channel (PostgreSQL)."""
        loop = asyncio.get_running_loop()
        if self.db.is_sqlite:
            path = self.home / SOCKET_NAME
            path.unlink(missing_ok=True)
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            sock.bind(str(path))
            transport, _ = await loop.create_datagram_endpoint(
                lambda: _Datagrams(self), sock=sock)
            self._transport = transport
            return
        self._thread = threading.Thread(target=self._listen, args=(loop,), daemon=True,
                                        name="wake-listener")
        self._thread.start()

    def _listen(self, loop: asyncio.AbstractEventLoop) -> None:
        url = make_url(self.db.url).set(drivername="postgresql")
        conninfo = url.render_as_string(hide_password=False)
        outage = Outage(log, "engine wake-ups")
        while not self._stopping.is_set():
            try:
                with psycopg.connect(conninfo, autocommit=True,
                                     connect_timeout=CONNECT_TIMEOUT) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    outage.succeeded()
                    self._relay_notifications(conn, loop)
            except Exception as exc:  # never ends while the engine runs: its passes go on
                self._stopping.wait(outage.failed(exc))

    def _relay_notifications(self, conn: psycopg.Connection[Any],
                             loop: asyncio.AbstractEventLoop) -> None:
        """Sleep on the connection's socket until notifications come, and wake the engine.

        `select` rather than psycopg's `notifies(timeout=...)`, which wakes ten times a second
        to look for a timeout and so kept an idle engine near 1% CPU."""
        watched = [conn.fileno(), self._stop_reader.fileno()]
        while not self._stopping.is_set():
            readable, _, _ = select.select(watched, [], [])
            if watched[0] in readable:
                for notification in conn.notifies(timeout=0):
                    loop.call_soon_threadsafe(self.received, notification.payload)

    def received(self, payload: str) -> None:
        """A signal came (on the event loop): wake the engine, and hand over what it says
        was canceled."""
        self.wake.set()
        canceled = canceled_in(payload)
        if canceled and self.on_canceled is not None:
            self.on_canceled(canceled)

    def stop(self) -> None:
        """Stop listening."""
        self._stopping.set()
        with contextlib.suppress(OSError):
            self._stop_writer.send(b"!")
        if self._transport is not None:
            self._transport.close()
            (self.home / SOCKET_NAME).unlink(missing_ok=True)
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._stop_reader.close()
        self._stop_writer.close()
