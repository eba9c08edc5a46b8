"""What the API tells of the engine nodes: `/readyz` on a node with an engine of its own, and
runs started while no engine is alive anywhere."""

from __future__ import annotations

from datetime import timedelta

from flask import Flask

from scheduler.api.engines import expect_own_engine
from scheduler.clock import FrozenClock
from scheduler.db.session import Database
from scheduler.services.leases import Heartbeats
from scheduler.settings import Settings
from tests.support import JOBS, Tenant, http_job

COLLECTION = "/cloudservices/cs1/resources/scheduler/~/jobcollections/jc1"
OWN_ENGINE_DOWN = "not running: this node's engine has sent no heartbeat in the last 5 s"

# What `/readyz` says when no execution waits for engine nodes.
NO_WAITING = {"executionsWaitingForNodes": {"count": 0, "nodes": []}}


def beat(db: Database, node: str, clock: FrozenClock) -> None:
    """An engine node says it is alive now."""
    with db.transaction() as session:
        Heartbeats().beat(session, node, clock.now())


def test_readyz_of_a_node_whose_engine_is_down_says_so_and_stays_ready_while_another_runs(
        app: Flask, db: Database, clock: FrozenClock, settings: Settings) -> None:
    client = expect_own_engine(app, "engine-mine-").test_client()
    alone = client.get("/readyz")
    assert alone.status_code == 503
    assert alone.get_json() == {"status": "not ready", "database": "ok",
                                "engine": OWN_ENGINE_DOWN, "engines": 0,
                                "unrunnableAttemptsLastMinute": {}, **NO_WAITING}
    beat(db, "engine-elsewhere", clock)
    elsewhere = client.get("/readyz")
    assert elsewhere.status_code == 200  # its API still serves: the other engine fires
    assert elsewhere.get_json() == {"status": "ready", "database": "ok",
                                    "engine": OWN_ENGINE_DOWN, "engines": 1,
                                    "unrunnableAttemptsLastMinute": {}, **NO_WAITING}
    beat(db, "engine-mine-2", clock)
    assert client.get("/readyz").get_json()["engine"] == "ok"
    clock.advance(timedelta(seconds=settings.engine.dead_after_seconds + 1))
    beat(db, "engine-elsewhere", clock)  # the other node lives on, this one's engine not
    assert client.get("/readyz").get_json()["engine"] == OWN_ENGINE_DOWN


def test_a_run_now_while_no_engine_runs_is_answered_as_queued(
        collection: Tenant, db: Database, clock: FrozenClock, settings: Settings) -> None:
    assert collection.call("PUT", f"{JOBS}/j1", http_job()).status_code == 201
    queued = collection.call("POST", f"{JOBS}/j1/run")
    assert queued.status_code == 202, queued.data
    assert queued.get_json()["queued"] == "no engine is running"
    assert queued.get_json()["status"] == "pending"
    assert queued.headers["Scheduler-Queued"] == "no engine is running"
    # Stored as any run is: it waits for an engine, and reads back as one.
    stored = collection.call("GET", f"{JOBS}/j1/executions/{queued.get_json()['id']}")
    assert stored.status_code == 200 and "queued" not in stored.get_json()

    beat(db, "engine-1", clock)
    started = collection.call("POST", f"{JOBS}/j1/run")
    assert started.status_code == 202
    assert "queued" not in started.get_json()
    assert "Scheduler-Queued" not in started.headers

    clock.advance(timedelta(seconds=settings.engine.dead_after_seconds + 1))
    assert collection.call("POST", f"{JOBS}/j1/run").get_json()["queued"] == \
        "no engine is running"


def test_an_inline_run_while_no_engine_runs_is_answered_as_queued(
        collection: Tenant, db: Database, clock: FrozenClock) -> None:
    inline = {"action": http_job()["action"]}
    queued = collection.call("POST", f"{COLLECTION}/executions", inline)
    assert queued.status_code == 202, queued.data
    assert queued.get_json()["queued"] == "no engine is running"
    assert queued.headers["Scheduler-Queued"] == "no engine is running"
    beat(db, "engine-1", clock)
    started = collection.call("POST", f"{COLLECTION}/executions", inline)
    assert started.status_code == 202 and "queued" not in started.get_json()
