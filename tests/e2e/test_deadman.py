"""The dead man's switch between real engine processes: two `scheduler serve --role engine`
on one PostgreSQL schema call `engine.heartbeat_url` about once per interval in total."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from tests.e2e.support import ServerProcess, wait_for
from tests.engine.harness import Answer, Received, Receiver

WATCHED_SECONDS = 8.0


def test_two_engine_processes_call_the_monitor_about_once_per_interval_in_total(
    server_factory: Any, start_receiver: Callable[..., Receiver],
    postgres_schema: tuple[str, str]
) -> None:
    called_at: list[float] = []

    def answer(_request: Received) -> Answer:
        called_at.append(time.monotonic())
        return 200, {}, b"OK"

    monitor = start_receiver(responder=answer)
    _schema, url = postgres_schema
    env = {"SCHEDULER_DATABASE_URL": url,
           "SCHEDULER_ENGINE_HEARTBEAT_URL": monitor.url("/ping"),
           "SCHEDULER_ENGINE_HEARTBEAT_INTERVAL_SECONDS": "1"}
    first: ServerProcess = server_factory(env=env, role="engine")
    server_factory(home=first.home, env=env, role="engine")
    assert wait_for(lambda: called_at, 60), "no engine called the monitor"

    watched_from = time.monotonic()
    time.sleep(WATCHED_SECONDS)  # the interval is wall-clock time between processes
    watched = [moment for moment in called_at if watched_from <= moment]
    # One call a second between them; one per node would be twice as many. A busy machine
    # may delay calls (fewer in the window), never add any: the lower bound is generous.
    assert WATCHED_SECONDS / 2 <= len(watched) <= WATCHED_SECONDS + 2, called_at
    assert {request.path for request in monitor.requests} == {"/ping"}
    assert {request.method for request in monitor.requests} == {"GET"}
