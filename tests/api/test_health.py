"""`/healthz` and `/readyz`: no client certificate, nothing about tenants."""

from __future__ import annotations

from datetime import timedelta

from flask import Flask

from scheduler.clock import FrozenClock
from scheduler.db.session import Database
from scheduler.services.leases import Heartbeats
from scheduler.settings import Settings

# What `/readyz` says when no execution waits for engine nodes.
NO_WAITING = {"executionsWaitingForNodes": {"count": 0, "nodes": []}}


def test_healthz_answers_without_a_certificate(app: Flask) -> None:
    response = app.test_client().get("/healthz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok"}
    assert len(response.headers["x-ms-request-id"]) == 32


def test_readyz_is_ready_while_an_engine_heartbeat_is_recent(
        app: Flask, db: Database, clock: FrozenClock, settings: Settings) -> None:
    client = app.test_client()
    refused = client.get("/readyz")
    assert refused.status_code == 503
    assert refused.get_json() == {"status": "not ready", "database": "ok",
                                  "engine": "no engine heartbeat in the last 5 s",
                                  "engines": 0, "unrunnableAttemptsLastMinute": {}, **NO_WAITING}
    with db.transaction() as session:
        Heartbeats().beat(session, "engine-1", clock.now())
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.get_json() == {"status": "ready", "database": "ok", "engine": "ok",
                                "engines": 1, "unrunnableAttemptsLastMinute": {}, **NO_WAITING}
    clock.advance(timedelta(seconds=settings.engine.dead_after_seconds + 1))
    assert client.get("/readyz").status_code == 503


def test_readyz_sums_what_the_live_engine_nodes_could_not_run_and_stays_ready(
        app: Flask, db: Database, clock: FrozenClock, settings: Settings) -> None:
    dead_after = timedelta(seconds=settings.engine.dead_after_seconds)
    with db.transaction() as session:
        Heartbeats().beat(session, "gone", clock.now() - 2 * dead_after, {"definition": 7})
        Heartbeats().beat(session, "engine-1", clock.now(), {"secret": 1})
        Heartbeats().beat(session, "engine-2", clock.now(), {"secret": 2, "action": 1})
        Heartbeats().beat(session, "engine-3", clock.now())
    ready = app.test_client().get("/readyz")
    assert ready.status_code == 200
    assert ready.get_json() == {"status": "ready", "database": "ok", "engine": "ok",
                                "engines": 3,
                                "unrunnableAttemptsLastMinute": {"action": 1, "secret": 3},
                                **NO_WAITING}


def test_other_paths_still_need_a_certificate(app: Flask) -> None:
    assert app.test_client().get("/healthz/x").status_code == 403
    assert app.test_client().get("/00000000-0000-0000-0000-000000000000/cloudservices"
                                 ).status_code == 403
