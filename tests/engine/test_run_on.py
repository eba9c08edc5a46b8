"""Running on named nodes: a job's `runOn` (or a run-now's) names the only engine nodes that
take its executions; when none of them is alive its executions wait, and say so in the API,
the metrics and `/readyz`, until one is; a node may not start under a live node's name."""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import select

from scheduler.clock import FrozenClock
from scheduler.db.models import Execution
from scheduler.db.session import Database
from scheduler.engine.store import NodeNameTaken
from tests.engine.harness import MakeDriver, NodeDriver, Receiver, together
from tests.support import JOBS, Tenant

EXECUTIONS = "/cloudservices/cs1/resources/scheduler/~/jobcollections/jc1/executions"
WAITING_GAUGE = "scheduler_engine_executions_waiting_for_nodes"


@pytest.fixture
def node_a(make_driver: MakeDriver) -> NodeDriver:
    """An engine node named `a`."""
    return make_driver("node-a", node_name="a")


@pytest.fixture
def node_b(make_driver: MakeDriver, node_a: NodeDriver) -> NodeDriver:
    """An engine node named `b`, on `node_a`'s event loop."""
    return make_driver("node-b", events=node_a.events, node_name="b")


def executions(db: Database) -> list[tuple[str, str | None, str | None]]:
    """Every execution's status, the node that ran it, and the nodes it may run on."""
    with db.snapshot() as session:
        return [(e.status, e.node, e.run_on) for e in session.scalars(
            select(Execution).order_by(Execution.created_at))]


def execution_document(collection: Tenant) -> dict[str, Any]:
    """The one execution of the collection, as the API shows it."""
    [document] = collection.call("GET", EXECUTIONS).get_json()
    return dict(document)


def readiness(app: Flask) -> dict[str, Any]:
    """What `/readyz` says of the executions that wait for engine nodes."""
    waiting: dict[str, Any] = app.test_client().get("/readyz").get_json()[
        "executionsWaitingForNodes"]
    return waiting


def test_a_job_that_runs_on_one_node_is_fired_by_that_node_alone(
    collection: Tenant, node_a: NodeDriver, node_b: NodeDriver, receiver: Receiver,
    clock: FrozenClock, db: Database,
) -> None:
    created = collection.call("PUT", f"{JOBS}/on-b", receiver.job(runOn=["B"]))
    assert created.status_code == 201, created.data
    assert created.get_json()["runOn"] == ["b"]
    clock.advance(timedelta(seconds=8))  # 12:00:08: within the lookahead of 12:00:10
    node_a.step()  # node a makes the execution, but leaves it for node b
    assert node_a.held_calls() == (0, 0)
    assert executions(db) == [("pending", None, ",b,")]
    clock.advance(timedelta(seconds=2))
    assert together(node_a, node_b) == [0, 1]
    assert executions(db) == [("completed", "node-b", ",b,")]
    assert len(receiver.requests) == 1


def test_jobs_without_run_on_are_taken_by_any_node(
    collection: Tenant, node_a: NodeDriver, node_b: NodeDriver, receiver: Receiver,
    clock: FrozenClock, db: Database,
) -> None:
    assert collection.call("PUT", f"{JOBS}/anywhere", receiver.job()).status_code == 201
    clock.advance(timedelta(seconds=10))
    assert node_a.step() == 1
    assert executions(db) == [("completed", "node-a", None)]
    document = execution_document(collection)
    assert "runOn" not in document and "waitingForNodes" not in document


TOMORROW = "2026-03-02T12:00:00Z"  # a job due then runs today only when run by hand


def test_a_run_now_naming_nodes_runs_there_instead_of_on_the_jobs_nodes(
    collection: Tenant, node_a: NodeDriver, node_b: NodeDriver, receiver: Receiver,
    db: Database,
) -> None:
    job = receiver.job(startTime=TOMORROW, runOn=["a"])
    assert collection.call("PUT", f"{JOBS}/on-a", job).status_code == 201
    run = collection.call("POST", f"{JOBS}/on-a/run", {"runOn": ["b"]})
    assert run.status_code == 202, run.data
    assert run.get_json()["runOn"] == ["b"]
    assert node_a.step() == 0
    assert executions(db) == [("pending", None, ",b,")], "node a leaves it to node b"
    assert node_b.step() == 1
    assert executions(db) == [("completed", "node-b", ",b,")]


def test_a_run_now_without_nodes_runs_on_the_jobs_nodes(
    collection: Tenant, node_a: NodeDriver, node_b: NodeDriver, receiver: Receiver,
    db: Database,
) -> None:
    job = receiver.job(startTime=TOMORROW, runOn=["b"])
    assert collection.call("PUT", f"{JOBS}/on-b", job).status_code == 201
    assert collection.call("POST", f"{JOBS}/on-b/run").status_code == 202
    assert node_a.step() == 0
    assert node_b.step() == 1
    assert executions(db) == [("completed", "node-b", ",b,")]


def test_an_inline_run_runs_on_the_nodes_its_definition_names(
    collection: Tenant, node_a: NodeDriver, node_b: NodeDriver, receiver: Receiver,
    db: Database,
) -> None:
    body = {"action": receiver.job()["action"], "parameters": {"who": "x"}, "runOn": ["b"]}
    run = collection.call("POST", EXECUTIONS, body)
    assert run.status_code == 202, run.data
    assert run.get_json()["runOn"] == ["b"]
    assert node_a.step() == 0
    assert node_b.step() == 1
    assert executions(db) == [("completed", "node-b", ",b,")]


def test_a_dead_nodes_execution_waits_for_a_node_of_its_name_not_another(
    app: Flask, collection: Tenant, node_a: NodeDriver, node_b: NodeDriver,
    make_driver: MakeDriver, receiver: Receiver, clock: FrozenClock, db: Database,
) -> None:
    assert collection.call("PUT", f"{JOBS}/on-b", receiver.job(runOn=["b"])).status_code == 201
    clock.advance(timedelta(seconds=10))
    node_a.step()  # node a makes the execution, pending for node b
    receiver.holds["/hook"] = answer = threading.Event()  # node b's call gets no answer
    try:
        node_b.run_pass()  # node b sends the call ...
        assert node_b.held_calls() == (0, 1)
        [execution_id] = [row.id for row in execution_rows(db)]
        # ... and dies: it is stepped no more, its heartbeat ages.
        clock.advance(timedelta(seconds=6))  # 12:00:16
        node_a.step()  # node a finds node b dead and hands its execution back, not to itself
        node_a.step()
    finally:
        answer.set()
    assert executions(db) == [("running", "node-b", ",b,")]
    assert lease_owner(db) is None
    assert len(receiver.requests) == 1
    document = execution_document(collection)
    assert (document["runOn"], document["waitingForNodes"]) == (["b"], True)
    assert readiness(app) == {"count": 1, "nodes": ["b"]}
    clock.advance(timedelta(seconds=1))
    node_a.run_timers()  # node a's next heartbeat counts the executions waiting
    node_a.settle()
    assert node_a.sample(WAITING_GAUGE) == 1

    # Another node named b starts, and takes the execution, with its tag.
    again = make_driver("node-b2", events=node_a.events, node_name="b")
    assert again.step() == 1
    assert receiver.tags() == [execution_id, execution_id]
    assert executions(db) == [("completed", "node-b2", ",b,")]
    assert readiness(app) == {"count": 0, "nodes": []}
    assert execution_document(collection)["waitingForNodes"] is False
    clock.advance(timedelta(seconds=1))
    node_a.run_timers()
    node_a.settle()
    assert node_a.sample(WAITING_GAUGE) == 0


def test_a_node_does_not_wake_for_executions_only_other_nodes_may_run(
    collection: Tenant, node_a: NodeDriver, receiver: Receiver, clock: FrozenClock,
) -> None:
    assert collection.call("PUT", f"{JOBS}/on-b", receiver.job(runOn=["b"])).status_code == 201
    clock.advance(timedelta(seconds=10))
    node_a.step()
    assert node_a.node.glance().attempt_time is None
    assert node_a.run_pass() == node_a.node.options.max_sleep


def test_a_node_may_not_start_under_the_name_of_a_live_node(
    node_a: NodeDriver, make_driver: MakeDriver, clock: FrozenClock,
) -> None:
    node_a.begin()
    twin = make_driver("node-a2", events=node_a.events, node_name="A")
    with pytest.raises(NodeNameTaken, match=r"node-a.*'a'.*engine\.node_name"):
        twin.node.heartbeat(clock.now(), starting=True)
    # Once node a's heartbeat has aged out (it crashed), the name is free again.
    clock.advance(node_a.node.options.dead_after + timedelta(seconds=1))
    twin.node.heartbeat(clock.now(), starting=True)


def execution_rows(db: Database) -> list[Execution]:
    """Every execution row."""
    with db.snapshot() as session:
        return list(session.scalars(select(Execution)))


def lease_owner(db: Database) -> str | None:
    """The lease owner of the one execution."""
    with db.snapshot() as session:
        return session.scalar(select(Execution.lease_owner))
