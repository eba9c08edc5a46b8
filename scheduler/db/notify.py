"""Waking engines when jobs change, so a job due sooner than their next wake-up fires on time.

On SQLite (one engine per home) the API sends a datagram to a socket in the home; on
PostgreSQL it sends `NOTIFY`, which reaches every engine node. Engines also wake on their own
at least every `engine.max_sleep_seconds`, so a lost signal only delays, never loses, a job.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import select
import socket
import threading
from pathlib import Path
from typing import Any

import psycopg
from sqlalchemy.engine import make_url

from scheduler.db.session import Database

log = logging.getLogger(__name__)

SOCKET_NAME = "engine.wake"
CHANNEL = "scheduler_jobs_changed"


def announce_jobs_changed(db: Database, home: Path) -> None:
    """Tell the engines that jobs changed; call after the change is committed."""
    if db.is_sqlite:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.setblocking(False)
            with contextlib.suppress(OSError):  # no engine listening: it wakes on its own
                sock.sendto(b"!", str(home / SOCKET_NAME))
        return
    with db.engine.connect() as conn:
        conn.exec_driver_sql(f"NOTIFY {CHANNEL}")
        conn.commit()


class _Datagrams(asyncio.DatagramProtocol):
    def __init__(self, wake: asyncio.Event) -> None:
        self.wake = wake

    def datagram_received(self, data: bytes, addr: object) -> None:
        self.wake.set()


class WakeListener:
    """Sets `wake` whenever the API announces a change."""

    def __init__(self, db: Database, home: Path, wake: asyncio.Event) -> None:
        self.db, self.home, self.wake = db, home, wake
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
                lambda: _Datagrams(self.wake), sock=sock)
            self._transport = transport
            return
        self._thread = threading.Thread(target=self._listen, args=(loop,), daemon=True,
                                        name="wake-listener")
        self._thread.start()

    def _listen(self, loop: asyncio.AbstractEventLoop) -> None:
        url = make_url(self.db.url).set(drivername="postgresql")
        conninfo = url.render_as_string(hide_password=False)
        while not self._stopping.is_set():
            try:
                with psycopg.connect(conninfo, autocommit=True) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    self._relay_notifications(conn, loop)
            except psycopg.Error:
                log.warning("lost the notification connection; listening again shortly")
                self._stopping.wait(1.0)

    def _relay_notifications(self, conn: psycopg.Connection[Any],
                             loop: asyncio.AbstractEventLoop) -> None:
        """Sleep on the connection's socket until notifications come, and wake the engine.

        `select` rather than psycopg's `notifies(timeout=...)`, which wakes ten times a second
        to look for a timeout and so kept an idle engine near 1% CPU."""
        watched = [conn.fileno(), self._stop_reader.fileno()]
        while not self._stopping.is_set():
            readable, _, _ = select.select(watched, [], [])
            if watched[0] in readable and any(True for _ in conn.notifies(timeout=0)):
                loop.call_soon_threadsafe(self.wake.set)

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
