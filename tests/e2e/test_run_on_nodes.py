"""Jobs that run on a named engine node, with real processes on PostgreSQL: when the node is
killed mid-run its executions wait, saying so, until another node of that name starts; every
occurrence completes once, and no other node takes any."""

from __future__ import annotations

import subprocess
from datetime import UTC, datetime, timedelta
from typing import Any

from tests.e2e.support import (
    BIN,
    ServerProcess,
    create_collection,
    schema_rows,
    slow_responder,
    wait_for,
)
from tests.engine.harness import Receiver

JOBS = 12


def _executions(schema: str) -> list[tuple[str, str, str | None]]:
    """Every execution's id, status and the node that holds or last held it."""
    return [(str(a), str(b), c) for a, b, c in schema_rows(
        schema, "SELECT id, status, node FROM {schema}.executions")]


def _nodes_named(schema: str, name: str) -> set[str]:
    """The ids of the engine nodes with a heartbeat under `name`."""
    return {str(node) for node, in schema_rows(
        schema, f"SELECT id FROM {{schema}}.engine_nodes WHERE name = '{name}'")}


def test_a_killed_nodes_executions_wait_for_a_node_of_its_name_and_run_once(
    server_factory: Any, receiver: Receiver, postgres_schema: tuple[str, str]
) -> None:
    schema, url = postgres_schema
    env = {"SCHEDULER_DATABASE_URL": url, "SCHEDULER_OUTBOUND_ALLOW_PRIVATE_NETWORKS": "true",
           "SCHEDULER_ENGINE_MAX_SLEEP_SECONDS": "0.2"}
    receiver.responder = slow_responder(2.0)
    api: ServerProcess = server_factory(env=env, role="api")
    session, jobs = create_collection(api, "P20Premium")
    executions_url = jobs.rsplit("/", 1)[0] + "/executions"
    node_a = server_factory(home=api.home, env={**env, "SCHEDULER_ENGINE_NODE_NAME": "a"},
                            role="engine")
    named_b = {**env, "SCHEDULER_ENGINE_NODE_NAME": "b"}
    doomed: ServerProcess = server_factory(home=api.home, env=named_b, role="engine")
    a_ids = _nodes_named(schema, "a")
    due = datetime.now(UTC) + timedelta(seconds=4)
    for index in range(JOBS):
        job = {"startTime": due.isoformat(), "runOn": ["b"], "action": {
            "type": "http", "request": {"uri": receiver.url(f"/b{index}"), "method": "POST"},
            "retryPolicy": {"retryType": "none"}}}
        response = session.put(f"{jobs}/job{index:02d}", json=job)
        assert response.status_code == 201, response.text
    assert wait_for(lambda: len(receiver.requests) >= 1, 60), "node b sent nothing"
    doomed.kill()  # the receiver holds each call 2 s: node b's calls are in flight

    def waiting() -> list[dict[str, Any]]:
        return [run for run in session.get(executions_url).json() if run["waitingForNodes"]]

    # Once node b's heartbeat is old, node a hands its executions back, and they wait.
    assert wait_for(lambda: len(waiting()) == JOBS, 60), session.get(executions_url).json()
    ready = session.get(f"{api.base_url}/readyz").json()
    assert ready["executionsWaitingForNodes"] == {"count": JOBS, "nodes": ["b"]}
    assert {status for _, status, _ in _executions(schema)} <= {"pending", "running"}

    server_factory(home=api.home, env=named_b, role="engine")
    done = lambda: {s for _, s, _ in _executions(schema)} == {"completed"}  # noqa: E731
    assert wait_for(done, 120), _executions(schema)
    executions = _executions(schema)
    assert len(executions) == JOBS
    tags = {request.headers["x-ms-execution-tag"] for request in receiver.requests}
    assert tags == {execution_id for execution_id, _, _ in executions}
    assert not {node for _, _, node in executions} & a_ids, "node a took none of them"
    leased_by_a = schema_rows(schema, "SELECT count(*) FROM {schema}.execution_events "
                                f"WHERE kind = 'leased' AND node IN ('{next(iter(a_ids))}')")
    assert leased_by_a == [(0,)]
    assert node_a.process is not None and node_a.process.poll() is None
    assert session.get(executions_url).json()[0]["waitingForNodes"] is False


def test_an_engine_under_a_live_nodes_name_waits_then_exits_saying_so(
    server_factory: Any, postgres_schema: tuple[str, str]
) -> None:
    _, url = postgres_schema
    env = {"SCHEDULER_DATABASE_URL": url, "SCHEDULER_ENGINE_NODE_NAME": "twin",
           "SCHEDULER_ENGINE_HEARTBEAT_SECONDS": "0.5",
           "SCHEDULER_ENGINE_DEAD_AFTER_SECONDS": "2"}
    first: ServerProcess = server_factory(env=env, role="engine")
    second = subprocess.run(
        [str(BIN), "serve", "--home", str(first.home), "--role", "engine"],
        capture_output=True, text=True, timeout=60, env=first.env)
    assert second.returncode == 2, second.stdout + second.stderr
    assert "held by node engine-" in second.stdout
    assert "runs under the name 'twin'" in second.stderr
    assert "engine.node_name" in second.stderr
    assert "Traceback" not in second.stderr
    assert first.process is not None and first.process.poll() is None
