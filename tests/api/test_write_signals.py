"""Which job writes wake the engines: those that change a fire time an engine could sleep past
or hold a readied call for; a job that fires later is found on the engines' next pass."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import psycopg
import pytest
from sqlalchemy import make_url

from scheduler.clock import FrozenClock
from scheduler.db.notify import CHANNEL, SOCKET_NAME
from scheduler.settings import Settings
from tests.support import JOBS, Tenant, http_job

MARKER = "marker"


class Signals:
    """What the engines of the home would hear, read up to a marker sent after the request
    (signals arrive in the order they were sent, so nothing is waited for)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.url = settings.database_url
        if self.url.startswith("sqlite"):
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            self.sock.bind(str(settings.home / SOCKET_NAME))
        else:
            url = make_url(self.url).set(drivername="postgresql")
            self.conn = psycopg.connect(url.render_as_string(hide_password=False),
                                        autocommit=True)
            self.conn.execute(f"LISTEN {CHANNEL}")

    def heard(self) -> list[str]:
        """The signals sent since the last call."""
        if self.url.startswith("sqlite"):
            self.sock.sendto(MARKER.encode(), str(self.settings.home / SOCKET_NAME))
            found = []
            while (payload := self.sock.recv(8192).decode()) != MARKER:
                found.append(payload)
            return found
        self.conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL, MARKER))
        found = []
        for notify in self.conn.notifies(timeout=30):
            if notify.payload == MARKER:
                break
            found.append(notify.payload)
        return found

    def close(self) -> None:
        """Stop listening."""
        if self.url.startswith("sqlite"):
            self.sock.close()
            (self.settings.home / SOCKET_NAME).unlink(missing_ok=True)
        else:
            self.conn.close()


@pytest.fixture
def signals(settings: Settings) -> Iterator[Signals]:
    """Listening as the home's engines do."""
    listening = Signals(settings)
    yield listening
    listening.close()


def starting_in(clock: FrozenClock, seconds: float, **extra: Any) -> dict[str, Any]:
    """A one-shot job that fires `seconds` from the clock's now."""
    start = clock.now() + timedelta(seconds=seconds)
    return http_job(startTime=start.isoformat().replace("+00:00", "Z"), **extra)


def test_a_job_that_fires_soon_wakes_the_engines_and_a_later_one_does_not(
    collection: Tenant, signals: Signals, clock: FrozenClock
) -> None:
    signals.heard()  # what setting up the collection sent
    assert collection.call("PUT", f"{JOBS}/soon", starting_in(clock, 3)).status_code == 201
    assert signals.heard() == ["!"]
    assert collection.call("PUT", f"{JOBS}/later", starting_in(clock, 600)).status_code == 201
    assert signals.heard() == []
    assert collection.call("PATCH", f"{JOBS}/later", {"state": "disabled"}).status_code == 200
    assert signals.heard() == []
    assert collection.call("DELETE", f"{JOBS}/later").status_code == 200
    assert signals.heard() == []


def test_moving_a_job_away_from_its_near_fire_time_or_deleting_it_wakes_the_engines(
    collection: Tenant, signals: Signals, clock: FrozenClock
) -> None:
    """An engine may hold a call readied for the old time: it must hear of the change."""
    collection.call("PUT", f"{JOBS}/a", starting_in(clock, 2))
    collection.call("PUT", f"{JOBS}/b", starting_in(clock, 2))
    signals.heard()
    assert collection.call("PUT", f"{JOBS}/a", starting_in(clock, 600)).status_code == 200
    assert signals.heard() == ["!"]
    assert collection.call("PATCH", f"{JOBS}/b", {"state": "disabled"}).status_code == 200
    assert signals.heard() == ["!"]
    collection.call("PUT", f"{JOBS}/c", starting_in(clock, 1))
    signals.heard()
    assert collection.call("DELETE", f"{JOBS}/c").status_code == 200
    assert signals.heard() == ["!"]
