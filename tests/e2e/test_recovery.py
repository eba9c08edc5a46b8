"""Killed engines: their work is taken over within seconds, not when their leases run out.

40 jobs fire every 2 s while an engine is killed with SIGKILL. Every occurrence is then
delivered within 10 s of its time plus the downtime, or recorded missed with its reason, and
no occurrence reaches the receiver with two execution tags.
"""

from __future__ import annotations

import itertools
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests
from sqlalchemy import func, select

from scheduler.db.models import Execution, HistoryEntry, Job
from scheduler.db.session import Database
from scheduler.domain.states import FINAL_STATUSES
from tests.e2e.support import ServerProcess, create_collection, wait_for
from tests.engine.harness import Answer, Received, Receiver

JOB_COUNT, PERIOD = 40, timedelta(seconds=2)
ALLOWED_LATENESS = timedelta(seconds=10)
ENV = {"SCHEDULER_OUTBOUND_ALLOW_PRIVATE_NETWORKS": "true",
       "SCHEDULER_PLANS_STANDARD_MAX_RECURRENCE": "PT1S"}  # the lease stays at its 90 s


@dataclass(frozen=True)
class Arrival:
    """A call the receiver got, when it got it."""

    at: datetime
    job_id: str
    scheduled: datetime
    tag: str


@pytest.fixture
def arrivals(start_receiver: Callable[..., Receiver]) -> tuple[Receiver, list[Arrival]]:
    """A receiver that notes when each call arrived."""
    seen: list[Arrival] = []

    def note(request: Received) -> Answer:
        seen.append(Arrival(datetime.now(UTC), request.header("x-ms-scheduler-jobid"),
                            datetime.fromisoformat(request.header(
                                "x-ms-scheduler-expected-execution-time")),
                            request.header("x-ms-execution-tag")))
        return 200, {}, b"ok"

    return start_receiver(responder=note), seen


def create_jobs(api: ServerProcess, receiver: Receiver) -> tuple[requests.Session, str]:
    """40 jobs every 2 s from a few seconds on; the session and the jobs URL."""
    session, jobs = create_collection(api, "Standard")
    start = (datetime.now(UTC) + timedelta(seconds=4)).replace(microsecond=0)
    for index in range(JOB_COUNT):
        job = {"startTime": start.isoformat(),
               "recurrence": {"frequency": "second", "interval": 2},
               "action": {"type": "http", "request": {"uri": receiver.url("/tick"),
                                                      "method": "POST"},
                          "retryPolicy": {"retryType": "none"}}}
        assert session.put(f"{jobs}/job{index:02d}", json=job).status_code == 201
    return session, jobs


def restart(engine: ServerProcess) -> timedelta:
    """Kill an engine with SIGKILL and start it again at once; the downtime."""
    killed = time.monotonic()
    engine.kill()
    engine.start()
    return timedelta(seconds=time.monotonic() - killed)


def stop_firing(session: requests.Session, jobs: str, db: Database) -> datetime:
    """Disable every job, and wait until no execution is open; when they were disabled."""
    disabled = datetime.now(UTC)
    assert session.patch(jobs, json={"state": "disabled"}).status_code == 200
    assert wait_for(lambda: all(status in FINAL_STATUSES for _, _, status, _ in
                                executions(db)), 60), "executions stayed open"
    return disabled


def executions(db: Database) -> list[tuple[str, datetime, str, str]]:
    """Every execution: its job, scheduled time, status and id."""
    with db.snapshot() as session:
        return [(job_id, scheduled, status, execution_id)
                for job_id, scheduled, status, execution_id in session.execute(
                    select(Job.job_id, Execution.scheduled_time, Execution.status, Execution.id)
                    .join(Job, Job.id == Execution.job_pk))]


def missed_reasons(db: Database) -> dict[tuple[str, datetime], str]:
    """The history's reason for each missed occurrence, by job and scheduled time."""
    with db.snapshot() as session:
        rows = session.execute(select(Job.job_id, HistoryEntry.expected_execution_time,
                                      HistoryEntry.message)
                               .join(Job, Job.id == HistoryEntry.job_pk)
                               .where(HistoryEntry.status == "missed"))
        return {(job_id, scheduled): message for job_id, scheduled, message in rows}


def node_of_latest_executions(db: Database) -> str:
    """The engine node that made the most executions of the last few seconds."""
    since = datetime.now(UTC) - timedelta(seconds=4)
    with db.snapshot() as session:
        nodes = session.execute(select(Execution.node, func.count()).where(
            Execution.scheduled_time >= since, Execution.node.is_not(None))
            .group_by(Execution.node)).all()
    return str(max(nodes, key=lambda row: int(row[1]))[0])


def check_every_occurrence(db: Database, seen: list[Arrival], disabled: datetime,
                           downtime: timedelta) -> None:
    """Every occurrence before the jobs were disabled was sent within the allowed lateness
    (plus the downtime), or recorded missed with a reason; none went out with two tags."""
    tags: dict[tuple[str, datetime], set[str]] = defaultdict(set)
    first: dict[tuple[str, datetime], datetime] = {}
    for arrival in seen:
        key = (arrival.job_id, arrival.scheduled)
        tags[key].add(arrival.tag)
        first.setdefault(key, arrival.at)
    assert all(len(found) == 1 for found in tags.values()), "an occurrence had two tags"
    reasons = missed_reasons(db)
    by_job: dict[str, list[datetime]] = defaultdict(list)
    for job_id, scheduled, status, execution_id in executions(db):
        by_job[job_id].append(scheduled)
        if scheduled > disabled - timedelta(seconds=1):
            continue  # canceled by the disabling, or made as it came
        key = (job_id, scheduled)
        if status == "missed":
            assert reasons[key].startswith("Missed: "), reasons.get(key)
            continue
        assert status == "completed" and tags[key] == {execution_id}, (key, status)
        late = first[key] - scheduled
        assert late <= ALLOWED_LATENESS + downtime, f"{key} sent {late} late ({downtime} down)"
    assert len(by_job) == JOB_COUNT
    for job_id, times in by_job.items():
        times.sort()
        assert all(b - a == PERIOD for a, b in itertools.pairwise(times)), job_id
        assert len(times) >= 8, f"{job_id} fired too rarely: {len(times)}"


def fire_and_kill(engine: ServerProcess, seen: list[Arrival], kills: int) -> timedelta:
    """Let the jobs fire, kill the engine and restart it `kills` times; the longest
    downtime."""
    downtime = timedelta(0)
    for _ in range(kills):
        assert wait_for(lambda: len(seen) >= JOB_COUNT * 2, 30)
        time.sleep(1.3)  # killed between instants, with the next one's calls readied
        downtime = max(downtime, restart(engine))
        start = len(seen)
        assert wait_for(lambda: len(seen) > start + JOB_COUNT * 2, 30)  # noqa: B023
    return downtime


def test_a_killed_engine_on_sqlite_is_taken_over_at_restart(
    server_factory: Any, arrivals: tuple[Receiver, list[Arrival]],
) -> None:
    receiver, seen = arrivals
    server: ServerProcess = server_factory(env=ENV)
    session, jobs = create_jobs(server, receiver)
    downtime = fire_and_kill(server, seen, kills=2)
    session = server.session()
    db = Database(f"sqlite:///{server.home / 'scheduler.db'}")
    try:
        disabled = stop_firing(session, jobs, db)
        check_every_occurrence(db, seen, disabled, downtime)
    finally:
        db.dispose()


def test_a_killed_engine_on_postgresql_is_taken_over_by_heartbeat(
    server_factory: Any, arrivals: tuple[Receiver, list[Arrival]],
    postgres_schema: tuple[str, str],
) -> None:
    receiver, seen = arrivals
    env = {**ENV, "SCHEDULER_DATABASE_URL": postgres_schema[1]}
    api: ServerProcess = server_factory(env=env, role="api")
    engine: ServerProcess = server_factory(home=api.home, env=env, role="engine")
    session, jobs = create_jobs(api, receiver)
    downtime = fire_and_kill(engine, seen, kills=2)
    db = Database(postgres_schema[1])
    try:
        disabled = stop_firing(session, jobs, db)
        check_every_occurrence(db, seen, disabled, downtime)
    finally:
        db.dispose()


def test_one_of_three_engines_on_postgresql_killed_is_taken_over_by_the_others(
    server_factory: Any, arrivals: tuple[Receiver, list[Arrival]],
    postgres_schema: tuple[str, str],
) -> None:
    receiver, seen = arrivals
    env = {**ENV, "SCHEDULER_DATABASE_URL": postgres_schema[1]}
    api: ServerProcess = server_factory(env=env, role="api")
    engines = [server_factory(home=api.home, env=env, role="engine") for _ in range(3)]
    session, jobs = create_jobs(api, receiver)
    assert wait_for(lambda: len(seen) >= JOB_COUNT * 2, 30)
    time.sleep(1.3)
    db = Database(postgres_schema[1])
    busiest = node_of_latest_executions(db)
    [doomed] = [engine for engine in engines if busiest in "".join(engine.output)]
    doomed.kill()
    start = len(seen)
    assert wait_for(lambda: len(seen) > start + JOB_COUNT * 6, 120)
    try:
        disabled = stop_firing(session, jobs, db)
        check_every_occurrence(db, seen, disabled, timedelta(0))
    finally:
        db.dispose()
