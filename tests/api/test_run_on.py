"""A job's `runOn`, and a run's: validated with a 400 that names the problem and stores
nothing, carried by both JSON APIs, and shown on executions with whether they wait for
their nodes."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import func, select

from scheduler.clock import FrozenClock
from scheduler.db.models import Execution, Job
from scheduler.db.session import Database
from scheduler.services.leases import Heartbeats
from tests.support import JOBS, Tenant, http_job

EXECUTIONS = "/cloudservices/cs1/resources/scheduler/~/jobcollections/jc1/executions"
BAD_RUN_ON = [
    ("rack-1", "must be a JSON array"),
    ([], "must name at least one engine node"),
    (["rack 1"], "runOn.0: must be a node name"),
    (["ok", "a/b"], "runOn.1: must be a node name"),
    ([""], "runOn.0: must not be empty"),
    (["a" * 64], "runOn.0: must be at most 63 characters"),
    ([7], "runOn.0: must be a string"),
    ([f"n{i}" for i in range(21)], "must have at most 20 items"),
    (["Rack-1", "rack-1"], "runOn.1: names rack-1 again"),
]


def counts(db: Database) -> tuple[int, int]:
    """How many jobs and executions are stored."""
    with db.snapshot() as session:
        return (int(session.scalar(select(func.count()).select_from(Job)) or 0),
                int(session.scalar(select(func.count()).select_from(Execution)) or 0))


def refused(response: Any, problem: str) -> None:
    """A 400 whose message names `problem`."""
    assert response.status_code == 400, response.data
    error = response.get_json()["error"]
    assert error["code"] == "BadRequest" and problem in error["message"], error


@pytest.mark.parametrize(("value", "problem"), BAD_RUN_ON)
def test_a_job_with_a_bad_run_on_gets_400_naming_it_and_is_not_stored(
        collection: Tenant, db: Database, value: Any, problem: str) -> None:
    refused(collection.call("PUT", f"{JOBS}/job1", {**http_job(), "runOn": value}), problem)
    assert counts(db) == (0, 0)


@pytest.mark.parametrize(("value", "problem"), BAD_RUN_ON)
def test_a_run_with_a_bad_run_on_gets_400_naming_it_and_starts_nothing(
        collection: Tenant, db: Database, value: Any, problem: str) -> None:
    assert collection.call("PUT", f"{JOBS}/job1", http_job()).status_code == 201
    refused(collection.call("POST", f"{JOBS}/job1/run", {"runOn": value}), problem)
    inline = {"action": http_job()["action"], "runOn": value}
    refused(collection.call("POST", EXECUTIONS, inline), problem)
    assert counts(db) == (1, 0)


def test_run_on_is_kept_lower_cased_and_answered_by_the_asm_api(
        collection: Tenant) -> None:
    created = collection.call("PUT", f"{JOBS}/job1", {**http_job(), "runOn": ["Rack-1", "b"]})
    assert created.status_code == 201, created.data
    assert created.get_json()["runOn"] == ["rack-1", "b"]
    assert collection.call("GET", f"{JOBS}/job1").get_json()["runOn"] == ["rack-1", "b"]
    patched = collection.call("PATCH", f"{JOBS}/job1", {"runOn": ["c"]})
    assert patched.get_json()["runOn"] == ["c"]
    cleared = collection.call("PATCH", f"{JOBS}/job1", {"runOn": None})
    assert "runOn" not in cleared.get_json()


def test_an_execution_waits_for_its_nodes_while_none_of_them_is_alive(
        app: Flask, collection: Tenant, db: Database, clock: FrozenClock) -> None:
    job = {**http_job(), "runOn": ["b", "c"]}
    assert collection.call("PUT", f"{JOBS}/job1", job).status_code == 201
    run = collection.call("POST", f"{JOBS}/job1/run", {"runOn": ["b"]})
    assert run.status_code == 202, run.data
    assert (run.get_json()["runOn"], run.get_json()["waitingForNodes"]) == (["b"], True)
    with db.transaction() as session:
        Heartbeats().beat(session, "engine-1", clock.now(), name="a")
    [listed] = collection.call("GET", EXECUTIONS).get_json()
    assert listed["waitingForNodes"] is True
    ready = app.test_client().get("/readyz")
    assert ready.status_code == 200, "waiting executions never make a node unready"
    assert ready.get_json()["executionsWaitingForNodes"] == {"count": 1, "nodes": ["b"]}
    with db.transaction() as session:
        Heartbeats().beat(session, "engine-2", clock.now(), name="b")
    execution = collection.call("GET", f"{EXECUTIONS}/{listed['id']}").get_json()
    assert execution["waitingForNodes"] is False
    assert app.test_client().get("/readyz").get_json()["executionsWaitingForNodes"] == {
        "count": 0, "nodes": []}
    clock.advance(timedelta(seconds=10))  # every heartbeat is old: nothing is alive
    assert collection.call("GET", EXECUTIONS).get_json()[0]["waitingForNodes"] is True


def test_an_execution_of_a_job_without_run_on_says_nothing_of_nodes(
        collection: Tenant) -> None:
    assert collection.call("PUT", f"{JOBS}/job1", http_job()).status_code == 201
    run = collection.call("POST", f"{JOBS}/job1/run").get_json()
    assert "runOn" not in run and "waitingForNodes" not in run
