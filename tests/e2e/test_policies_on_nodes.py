"""The overlap, catch-up and backfill policies with several engine processes on one
PostgreSQL database, one of them killed while its calls are in flight: one decision per
occurrence, none lost, none made twice."""

from __future__ import annotations

import itertools
import re
import time
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

from tests.e2e.support import (
    ServerProcess,
    create_collection,
    schema_rows,
    slow_responder,
    wait_for,
)
from tests.engine.harness import Answer, Received, Receiver

HOLD = 3.0  # seconds the target takes to answer each call


def _executions(schema: str, job_id: str) -> list[tuple[str, datetime, str, str]]:
    """A job's executions: id, scheduled time, status and trigger, earliest first."""
    return [(str(a), b.replace(tzinfo=UTC), str(c), str(d)) for a, b, c, d in schema_rows(
        schema, "SELECT e.id, e.scheduled_time, e.status, e.trigger FROM {schema}.executions e "
                f"JOIN {{schema}}.jobs j ON j.id = e.job_pk WHERE j.job_id = '{job_id}' "
                "ORDER BY e.scheduled_time, e.id")]


def _open(schema: str) -> int:
    [(count,)] = schema_rows(schema, "SELECT count(*) FROM {schema}.executions WHERE status IN "
                               "('pending', 'running', 'paused', 'waiting')")
    return int(count)


def _engines(server_factory: Any, api: ServerProcess, env: dict[str, str], count: int
             ) -> list[ServerProcess]:
    return [server_factory(home=api.home, env=env, role="engine") for _ in range(count)]


def _every_second(path: str, receiver: Receiver, start: datetime, **extra: Any
                  ) -> dict[str, Any]:
    return {"startTime": start.isoformat(), "recurrence": {"frequency": "second", **extra.pop(
        "recurrence", {})}, "action": {
        "type": "http", "request": {"uri": receiver.url(path), "method": "POST"},
        "retryPolicy": {"retryType": "none"}}, **extra}


def _env(url: str) -> dict[str, str]:
    return {"SCHEDULER_DATABASE_URL": url, "SCHEDULER_OUTBOUND_ALLOW_PRIVATE_NETWORKS": "true",
            "SCHEDULER_ENGINE_MAX_SLEEP_SECONDS": "0.2",
            "SCHEDULER_PLANS_P20PREMIUM_MAX_RECURRENCE": "PT1S"}


def test_skip_never_overlaps_a_run_and_decides_each_occurrence_once_across_a_kill(
    server_factory: Any, receiver: Receiver, postgres_schema: tuple[str, str]
) -> None:
    schema, url = postgres_schema
    env = _env(url)
    arrivals: dict[str, list[float]] = defaultdict(list)

    def respond(request: Received) -> Answer:
        arrivals[request.header("x-ms-execution-tag")].append(time.monotonic())
        time.sleep(HOLD)
        return 200, {}, b"ok"

    receiver.responder = respond
    api: ServerProcess = server_factory(env=env, role="api")
    session, jobs = create_collection(api, "P20Premium")
    engines = _engines(server_factory, api, env, 2)
    start = (datetime.now(UTC) + timedelta(seconds=3)).replace(microsecond=0)
    job = _every_second("/skip", receiver, start, recurrence={"interval": 2},
                        concurrencyPolicy="skip")
    assert session.put(f"{jobs}/skip", json=job).status_code == 201
    assert wait_for(lambda: len(receiver.requests) >= 2, 60)
    # Kill the engine that holds the run in flight: its call is made again, by another.
    holders = {str(node) for node, in schema_rows(
        schema, "SELECT node FROM {schema}.executions WHERE status = 'running'")}
    doomed = next((engine for engine in engines if _node_of(engine) in holders), engines[0])
    doomed.kill()
    _engines(server_factory, api, env, 1)
    assert wait_for(lambda: len({r.headers["x-ms-execution-tag"]
                                 for r in receiver.requests}) >= 5, 120)
    assert session.patch(f"{jobs}/skip", json={"state": "disabled"}).status_code == 200
    assert wait_for(lambda: _open(schema) == 0, 60), _executions(schema, "skip")
    runs = _executions(schema, "skip")
    times = [scheduled for _, scheduled, _, _ in runs]
    assert len(times) == len(set(times)), "one execution per occurrence"
    assert all(b - a == timedelta(seconds=2) for a, b in itertools.pairwise(times)), \
        "no occurrence lost between the first and the last"
    assert {status for _, _, status, _ in runs} <= {"completed", "skipped", "canceled"}
    assert any(status == "skipped" for _, _, status, _ in runs)
    # The target never had two runs at once: each arrives after the last one's answer.
    spans = sorted((min(seen), max(seen)) for seen in arrivals.values())
    for (_, last), (first, _) in itertools.pairwise(spans):
        assert first >= last + HOLD - 0.2, "a run began while another was open"
    completed = {execution_id for execution_id, _, status, _ in runs if status == "completed"}
    assert completed <= set(arrivals)


def _node_of(engine: ServerProcess) -> str | None:
    """The node id an engine process announced, ready, that it runs as."""
    for line in engine.output:
        found = re.search(r"node (engine-[0-9a-f]+)", line)
        if found:
            return found.group(1)
    return None


def test_catch_up_and_backfill_run_each_occurrence_once_across_a_killed_engine(
    server_factory: Any, receiver: Receiver, postgres_schema: tuple[str, str]
) -> None:
    schema, url = postgres_schema
    env = _env(url)
    receiver.responder = slow_responder(1.0)
    api: ServerProcess = server_factory(env=env, role="api")
    session, jobs = create_collection(api, "P20Premium")
    start = (datetime.now(UTC) + timedelta(seconds=1)).replace(microsecond=0)
    assert session.put(f"{jobs}/every", json=_every_second(
        "/every", receiver, start, catchUp={"policy": "all"})).status_code == 201
    assert session.put(f"{jobs}/latest", json=_every_second(
        "/latest", receiver, start)).status_code == 201
    # No engine runs while the jobs fall due.
    assert wait_for(lambda: datetime.now(UTC) > start + timedelta(seconds=12), 30)
    engines = _engines(server_factory, api, env, 2)

    def missed() -> list[str]:
        return [status for _, _, status, _ in _executions(schema, "latest")
                if status == "missed"]

    assert wait_for(lambda: len(missed()) >= 10, 60), _executions(schema, "latest")
    end = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=1)
    backfill = session.post(f"{jobs}/latest/backfill", json={
        "start": start.isoformat(), "end": end.isoformat(), "onlyMissed": True})
    assert backfill.status_code == 202, backfill.text
    backfilled = backfill.json()["executions"]
    assert len(backfilled) >= 10
    engines[0].kill()  # calls of the catch-up and the backfill are in flight
    _engines(server_factory, api, env, 1)

    def caught_up() -> bool:
        return all(status not in ("pending", "running") for job_id in ("every", "latest")
                   for _, scheduled, status, _ in _executions(schema, job_id)
                   if scheduled <= end)

    assert wait_for(caught_up, 120), (_executions(schema, "every"),
                                      [r.path for r in receiver.requests])
    for job_id in ("every", "latest"):
        assert session.patch(f"{jobs}/{job_id}", json={"state": "disabled"}).status_code == 200
    assert wait_for(lambda: _open(schema) == 0, 120), _executions(schema, "every")
    # catchUp all: every occurrence since the start ran, each once, none missed.
    every = _executions(schema, "every")
    times = [scheduled for _, scheduled, _, _ in every]
    assert len(times) == len(set(times))
    assert all(b - a == timedelta(seconds=1) for a, b in itertools.pairwise(times))
    assert {status for _, scheduled, status, _ in every if scheduled <= end} == {"completed"}
    # The backfill ran each missed occurrence once: one backfill execution each.
    latest = _executions(schema, "latest")
    by_time: dict[datetime, list[tuple[str, str]]] = defaultdict(list)
    for _, scheduled, status, trigger in latest:
        by_time[scheduled].append((trigger, status))
    asked = {run["scheduledTime"] for run in backfilled}
    for scheduled, made in by_time.items():
        triggers = sorted(trigger for trigger, _ in made)
        assert triggers.count("schedule") == 1
        stamp = scheduled.strftime("%Y-%m-%dT%H:%M:%SZ")
        assert triggers.count("backfill") == (1 if stamp in asked else 0)
        if stamp in asked:
            assert ("backfill", "completed") in made and ("schedule", "missed") in made
    # Each execution that completed was sent; none under two tags for one occurrence.
    tags: dict[str, set[str]] = defaultdict(set)
    for request in receiver.requests:
        tags[request.path + request.headers["x-ms-scheduler-expected-execution-time"]].add(
            request.headers["x-ms-execution-tag"])
    assert all(len(found) == 1 for key, found in tags.items() if key.startswith("/every"))
    assert all(len(found) <= 2 for found in tags.values())  # latest: schedule + backfill
