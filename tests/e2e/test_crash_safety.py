"""SIGKILL a serving process at random moments while it fires jobs, then restart it."""

from __future__ import annotations

import itertools
import random
import sqlite3
import time
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

from tests.e2e.support import ServerProcess, create_collection, slow_responder
from tests.engine.harness import Receiver


def _query(server: ServerProcess, sql: str) -> list[tuple[Any, ...]]:
    with sqlite3.connect(server.home / "scheduler.db", timeout=30) as conn:
        return list(conn.execute(sql))


def test_sigkill_while_firing_loses_no_job_history_or_occurrence(
    server_factory: Any, receiver: Receiver
) -> None:
    rng = random.Random(20261123)
    receiver.responder = slow_responder(0.3)  # calls are in flight when the kill lands
    env = {"SCHEDULER_OUTBOUND_ALLOW_PRIVATE_NETWORKS": "true",
           "SCHEDULER_PLANS_STANDARD_MAX_RECURRENCE": "PT1S",
           "SCHEDULER_ENGINE_LEASE_SECONDS": "3", "SCHEDULER_ENGINE_MAX_SLEEP_SECONDS": "0.5"}
    server: ServerProcess = server_factory(env=env)
    session, jobs = create_collection(server, "Standard")
    acknowledged: list[str] = []
    start = (datetime.now(UTC) + timedelta(seconds=1)).replace(microsecond=0)
    for round_number in range(4):
        for index in range(5):
            job_id = f"r{round_number}-{index}"
            job = {"startTime": start.isoformat(), "recurrence": {"frequency": "second"},
                   "action": {"type": "http", "request": {
                       "uri": receiver.url("/tick"), "method": "POST"}}}
            if session.put(f"{jobs}/{job_id}", json=job).status_code == 201:
                acknowledged.append(job_id)
        time.sleep(rng.uniform(0.5, 2.5))
        history_before = _query(server, "SELECT id FROM job_history")
        server.kill()
        assert {row[0] for row in _query(server, "SELECT job_id FROM jobs")} >= set(acknowledged)
        history_after = _query(server, "SELECT id FROM job_history")
        assert set(history_before) <= set(history_after)
        server.start()
        session = server.session()
    time.sleep(5)  # leases of the last kill run out; cut-off attempts are made again
    session.patch(jobs, json={"state": "disabled"})
    time.sleep(2)
    assert server.stop() == 0
    for job_id in acknowledged:
        assert (job_id,) in _query(server, f"SELECT job_id FROM jobs WHERE job_id = '{job_id}'")
    open_rows = _query(server, "SELECT count(*) FROM executions WHERE status = 'running'")
    assert open_rows == [(0,)], "an attempt cut off by a kill was not made again"
    times: dict[int, list[str]] = defaultdict(list)
    for job_pk, scheduled in _query(server, "SELECT job_pk, scheduled_time FROM executions"):
        times[job_pk].append(scheduled)
    for job_pk, scheduled in times.items():
        moments = sorted(datetime.fromisoformat(s) for s in scheduled)
        gaps = [b - a for a, b in itertools.pairwise(moments)]
        assert all(gap == timedelta(seconds=1) for gap in gaps), f"job {job_pk} dropped one"
    tags_sent = {r.headers["x-ms-execution-tag"] for r in receiver.requests}
    executed = {row[0] for row in _query(
        server, "SELECT id FROM executions WHERE status IN ('completed', 'failed')")}
    assert executed <= tags_sent
