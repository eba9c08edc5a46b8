"""Several engine processes on one PostgreSQL database: every occurrence runs exactly once."""

from __future__ import annotations

import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import create_engine, text

from tests.e2e.support import ServerProcess, create_collection, slow_responder, wait_for
from tests.engine.harness import Receiver
from tests.support import POSTGRES_URL


def _create_jobs(api: ServerProcess, receiver: Receiver, count: int, path: str,
                 due: datetime) -> None:
    session, jobs = create_collection(api, "P20Premium")
    for index in range(count):
        job = {"startTime": due.isoformat(), "action": {
            "type": "http", "request": {"uri": receiver.url(path), "method": "POST"},
            "retryPolicy": {"retryType": "none"}}}
        response = session.put(f"{jobs}/job{index:04d}", json=job)
        assert response.status_code == 201, response.text


def _executions(schema: str) -> list[tuple[str, str, str]]:
    engine = create_engine(POSTGRES_URL)
    with engine.connect() as conn:
        rows = conn.execute(text(
            f"SELECT e.id, e.status, j.job_id FROM {schema}.executions e "
            f"JOIN {schema}.jobs j ON j.id = e.job_pk")).all()
    engine.dispose()
    return [(str(a), str(b), str(c)) for a, b, c in rows]



def test_three_engines_run_each_of_a_thousand_occurrences_exactly_once(
    server_factory: Any, receiver: Receiver, postgres_schema: tuple[str, str]
) -> None:
    schema, url = postgres_schema
    env = {"SCHEDULER_DATABASE_URL": url, "SCHEDULER_OUTBOUND_ALLOW_PRIVATE_NETWORKS": "true",
           "SCHEDULER_ENGINE_MAX_SLEEP_SECONDS": "0.2", "SCHEDULER_ENGINE_BATCH": "50"}
    api: ServerProcess = server_factory(env=env, role="api")
    _create_jobs(api, receiver, 1000, "/once", datetime.now(UTC) + timedelta(seconds=20))
    for _ in range(3):
        server_factory(home=api.home, env=env, role="engine")
    assert wait_for(lambda: len(receiver.requests) >= 1000, 240), len(receiver.requests)
    time.sleep(2)  # room for a duplicate to show up
    tags = Counter(r.headers["x-ms-execution-tag"] for r in receiver.requests)
    assert len(receiver.requests) == 1000
    assert max(tags.values()) == 1
    executions = _executions(schema)
    assert len(executions) == 1000
    assert {status for _, status, _ in executions} == {"completed"}
    assert set(tags) == {execution_id for execution_id, _, _ in executions}
    assert len({job for _, _, job in executions}) == 1000


def test_calls_of_a_killed_engine_are_retaken_with_the_same_execution_tag(
    server_factory: Any, receiver: Receiver, postgres_schema: tuple[str, str]
) -> None:
    schema, url = postgres_schema
    env = {"SCHEDULER_DATABASE_URL": url, "SCHEDULER_OUTBOUND_ALLOW_PRIVATE_NETWORKS": "true",
           "SCHEDULER_ENGINE_MAX_SLEEP_SECONDS": "0.2", "SCHEDULER_ENGINE_LEASE_SECONDS": "4",
           "SCHEDULER_ENGINE_BATCH": "20"}
    receiver.responder = slow_responder(1.5)
    api: ServerProcess = server_factory(env=env, role="api")
    _create_jobs(api, receiver, 120, "/slow", datetime.now(UTC) + timedelta(seconds=5))
    doomed: ServerProcess = server_factory(home=api.home, env=env, role="engine")
    assert wait_for(lambda: len(receiver.requests) >= 10, 60)
    doomed.kill()  # the receiver holds each call 1.5 s: the latest ones are in flight
    for _ in range(2):
        server_factory(home=api.home, env=env, role="engine")
    done = lambda: {s for _, s, _ in _executions(schema)} == {"completed"}  # noqa: E731
    assert wait_for(lambda: len(_executions(schema)) == 120 and done(), 120)
    executions = _executions(schema)
    tags = Counter(r.headers["x-ms-execution-tag"] for r in receiver.requests)
    assert set(tags) == {execution_id for execution_id, _, _ in executions}
    assert len({job for _, _, job in executions}) == 120
    retaken = [tag for tag, seen in tags.items() if seen > 1]
    assert retaken, "the killed engine had calls in flight; they were made again"
