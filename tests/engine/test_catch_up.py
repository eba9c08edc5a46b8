"""Catching up: jobs already due when the engine starts go out batch after batch, each
occurrence made, sent and recorded once, on one node or on two."""

from __future__ import annotations

import threading
from collections import Counter
from datetime import timedelta

import pytest
from sqlalchemy import func, insert, select

from scheduler.clock import FrozenClock
from scheduler.db import executions
from scheduler.db.models import EXECUTIONS, Execution, HistoryEntry, Job
from scheduler.db.session import Database
from scheduler.domain.states import ExecutionStatus
from tests.engine.harness import MakeDriver, NodeDriver, Receiver, together
from tests.support import JOBS, Tenant

BATCH = 5


def due_jobs(collection: Tenant, receiver: Receiver, clock: FrozenClock, count: int) -> None:
    """`count` one-shot jobs due at 12:00:10, and the clock past it."""
    for number in range(count):
        response = collection.call("PUT", f"{JOBS}/job{number:02d}", receiver.job())
        assert response.status_code == 201
    clock.advance(timedelta(seconds=30))


def history_count(db: Database) -> int:
    """How many history entries there are."""
    with db.snapshot() as session:
        return int(session.scalar(select(func.count()).select_from(HistoryEntry)) or 0)


def assert_each_job_ran_once(db: Database, receiver: Receiver, jobs: int) -> None:
    """Every job was called once, with a tag of its own, its execution completed and its
    attempt recorded once."""
    called = Counter(request.header("x-ms-scheduler-jobid") for request in receiver.requests)
    assert len(called) == jobs and set(called.values()) == {1}
    tags = set(receiver.tags())
    assert len(tags) == jobs
    with db.snapshot() as session:
        made = session.execute(select(Execution.id, Execution.status)).all()
        recorded = Counter(session.scalars(select(HistoryEntry.job_pk)))
    assert {execution_id for execution_id, _ in made} == tags
    assert {status for _, status in made} == {ExecutionStatus.COMPLETED}
    assert len(recorded) == jobs and set(recorded.values()) == {1}


def test_a_backlog_of_due_jobs_goes_out_in_one_pass_of_several_ticks_each_recorded_once(
    collection: Tenant, make_driver: MakeDriver, receiver: Receiver, clock: FrozenClock,
    db: Database,
) -> None:
    due_jobs(collection, receiver, clock, 23)  # four full batches and three jobs
    driver = make_driver(batch=BATCH)
    # One step makes one pass: all 23 started in it, and recorded once back.
    assert driver.step() == 23
    assert_each_job_ran_once(db, receiver, 23)


def test_outcomes_wait_while_a_backlog_is_made_and_are_recorded_once_it_is(
    collection: Tenant, make_driver: MakeDriver, receiver: Receiver, clock: FrozenClock,
    db: Database,
) -> None:
    due_jobs(collection, receiver, clock, 12)
    driver = make_driver(batch=BATCH, max_sleep=0.0)  # one tick a pass: no time to chain more
    recorded = []
    for _ in range(2):  # 5 and 5 jobs
        driver.step()
        recorded.append(history_count(db))
    # The last 2 jobs, their calls held, lest an answer coming back ask for a pass itself.
    receiver.holds["/hook"] = answer = threading.Event()
    try:
        driver.run_pass()
        assert driver.wants_a_pass, \
            "the pass that made the backlog's last batch asks for another"
    finally:
        answer.set()
    driver.settle()
    driver.record()
    recorded.append(history_count(db))
    assert recorded == [0, 0, 12]
    assert_each_job_ran_once(db, receiver, 12)


def test_a_node_holding_its_fill_records_what_came_back_though_more_is_due(
    collection: Tenant, make_driver: MakeDriver, receiver: Receiver, clock: FrozenClock,
    db: Database,
) -> None:
    due_jobs(collection, receiver, clock, 12)
    driver = make_driver(batch=BATCH, concurrency=10)
    assert driver.step() == 10  # two full batches, its fill, sent and recorded
    assert len(receiver.requests) == 10 and history_count(db) == 10
    assert driver.step() == 2, "recorded, they leave room for the rest"
    assert_each_job_ran_once(db, receiver, 12)


def test_leases_are_renewed_for_outcomes_not_yet_recorded(
    collection: Tenant, make_driver: MakeDriver, receiver: Receiver, clock: FrozenClock,
    db: Database,
) -> None:
    due_jobs(collection, receiver, clock, 7)
    driver = make_driver(batch=BATCH, max_sleep=0.0)
    lease = driver.node.options.lease
    assert driver.step() == 0  # a full batch, a backlog: nothing recorded
    clock.advance(lease / 2)
    driver.run_pass()  # renews the leases held, and sends the last two jobs
    driver.settle()
    until = clock.now() + lease
    with db.snapshot() as session:
        leases = [held_until for status, held_until in session.execute(
            select(Execution.status, Execution.lease_until)) if status == "running"]
    assert len(leases) == 7 and all(held_until == until for held_until in leases)


def test_a_tick_that_meets_an_occurrence_made_already_fires_the_others_only(
    collection: Tenant, driver: NodeDriver, receiver: Receiver, clock: FrozenClock,
    db: Database,
) -> None:
    due_jobs(collection, receiver, clock, 3)
    with db.transaction() as session:
        job = session.scalars(select(Job).where(Job.job_id == "job01")).one()
        assert job.next_execution_time is not None
        row = executions.execution_row(
            executions.new_execution_id(), job.id, job.collection_id, job.next_execution_time,
            0, clock.now(), status=ExecutionStatus.COMPLETED)
        session.execute(insert(EXECUTIONS), [row])
    assert driver.step() == 2
    assert sorted(r.header("x-ms-scheduler-jobid") for r in receiver.requests) == [
        "job00", "job02"]
    with db.snapshot() as session:
        per_job = Counter(session.scalars(select(Execution.job_pk)))
        moved = session.scalars(select(Job).where(Job.job_id == "job01")).one()
    assert set(per_job.values()) == {1} and moved.execution_count == 0
    assert driver.step() == 0 and len(receiver.requests) == 2


# One engine runs on a SQLite home (its file lock says so), so two nodes are PostgreSQL's.
@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_two_nodes_catching_up_together_fire_each_occurrence_once(
    collection: Tenant, make_driver: MakeDriver, receiver: Receiver, clock: FrozenClock,
    db: Database,
) -> None:
    due_jobs(collection, receiver, clock, 40)
    first = make_driver(batch=BATCH)
    second = make_driver("node-b", events=first.events, batch=BATCH)
    assert sum(together(first, second)) == 40
    assert_each_job_ran_once(db, receiver, 40)
