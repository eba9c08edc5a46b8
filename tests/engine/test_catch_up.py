"""Catching up: jobs already due when the engine starts go out batch after batch, each
occurrence made, sent and recorded once, on one node or on two."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest
from flask import Flask
from scheduler.engine.timers import FiringLoop, ManualTimers
from sqlalchemy import func, insert, select

from scheduler.clock import FrozenClock
from scheduler.db.models import EXECUTIONS, Execution, HistoryEntry, Job
from scheduler.db.session import Database
from scheduler.domain.states import ExecutionStatus
from scheduler.engine.node import Engine
from scheduler.services import executions
from tests.engine.conftest import EngineDriver, Receiver, make_engine
from tests.engine.test_firing import job_to
from tests.support import JOBS, Tenant

BATCH = 5


def due_jobs(collection: Tenant, receiver: Receiver, clock: FrozenClock, count: int) -> None:
    """`count` one-shot jobs due at 12:00:10, and the clock past it."""
    for number in range(count):
        response = collection.call("PUT", f"{JOBS}/job{number:02d}", job_to(receiver))
        assert response.status_code == 201
    clock.advance(timedelta(seconds=30))


def loop_of(engine: Engine, clock: FrozenClock, **options: Any) -> FiringLoop:
    """A firing loop of this engine, its batches of `BATCH` jobs."""
    engine.options = replace(engine.options, batch=BATCH, **options)
    return FiringLoop(engine, asyncio.Event(), ManualTimers(clock))


async def settle(loop: FiringLoop) -> None:
    """Wait for the calls in flight to come back."""
    if loop.inflight:
        await asyncio.wait(list(loop.inflight))


async def pass_until_back(loop: FiringLoop, clock: FrozenClock) -> int:
    """Make and claim what is due, wait for the calls to come back and record what is time
    to; how many calls were started."""
    await loop.make_and_claim(clock.now())
    started = len(loop.inflight) + len(loop.finished)
    await settle(loop)
    await loop.record_finished()
    return started


def history_count(db: Database) -> int:
    """How many history entries there are."""
    with db.snapshot() as session:
        return int(session.scalar(select(func.count()).select_from(HistoryEntry)) or 0)


def assert_each_job_ran_once(db: Database, receiver: Receiver, jobs: int) -> None:
    """Every job was called once, with a tag of its own, its execution completed and its
    attempt recorded once."""
    called = Counter(request.header("x-ms-scheduler-jobid") for request in receiver.requests)
    assert len(called) == jobs and set(called.values()) == {1}
    tags = {request.header("x-ms-execution-tag") for request in receiver.requests}
    assert len(tags) == jobs
    with db.snapshot() as session:
        made = session.execute(select(Execution.id, Execution.status)).all()
        recorded = Counter(session.scalars(select(HistoryEntry.job_pk)))
    assert {execution_id for execution_id, _ in made} == tags
    assert {status for _, status in made} == {ExecutionStatus.COMPLETED}
    assert len(recorded) == jobs and set(recorded.values()) == {1}


def test_a_backlog_of_due_jobs_goes_out_in_one_pass_of_several_ticks_each_recorded_once(
    collection: Tenant, driver: EngineDriver, receiver: Receiver, clock: FrozenClock,
    db: Database,
) -> None:
    due_jobs(collection, receiver, clock, 23)  # four full batches and three jobs
    loop = loop_of(driver.engine, clock)

    async def catch_up() -> tuple[int, int]:
        return await pass_until_back(loop, clock), len(loop.finished)

    started, unrecorded = driver.loop.run_until_complete(catch_up())
    assert started == 23 and unrecorded == 0
    assert_each_job_ran_once(db, receiver, 23)


def test_outcomes_wait_while_a_backlog_is_made_and_are_recorded_once_it_is(
    collection: Tenant, driver: EngineDriver, receiver: Receiver, clock: FrozenClock,
    db: Database,
) -> None:
    due_jobs(collection, receiver, clock, 12)
    loop = loop_of(driver.engine, clock, max_sleep=0.0)  # one tick a pass: no time to chain more

    async def pass_after_pass() -> list[int]:
        recorded = []
        for _ in range(3):  # 5, 5 and 2 jobs
            await pass_until_back(loop, clock)
            recorded.append(history_count(db))
        return recorded

    recorded = driver.loop.run_until_complete(pass_after_pass())
    assert recorded == [0, 0, 12]
    assert loop.wake.is_set(), "the pass that made the backlog's last batch asks for another"
    assert_each_job_ran_once(db, receiver, 12)


def test_a_node_holding_its_fill_records_what_came_back_though_more_is_due(
    collection: Tenant, driver: EngineDriver, receiver: Receiver, clock: FrozenClock,
    db: Database,
) -> None:
    due_jobs(collection, receiver, clock, 12)
    loop = loop_of(driver.engine, clock, concurrency=10)

    async def fill_then_record() -> tuple[int, int, int]:
        started = await pass_until_back(loop, clock)  # two full batches: its fill
        return started, history_count(db), loop.room()

    started, recorded, room = driver.loop.run_until_complete(fill_then_record())
    assert (started, recorded, room) == (10, 10, 10)


def test_leases_are_renewed_for_outcomes_not_yet_recorded(
    collection: Tenant, driver: EngineDriver, receiver: Receiver, clock: FrozenClock,
    db: Database,
) -> None:
    due_jobs(collection, receiver, clock, 7)
    loop = loop_of(driver.engine, clock, max_sleep=0.0)

    async def hold_then_renew() -> None:
        await pass_until_back(loop, clock)  # a full batch, a backlog: nothing recorded
        clock.advance(driver.engine.options.lease / 2)
        await loop.make_and_claim(clock.now())
        await settle(loop)

    driver.loop.run_until_complete(hold_then_renew())
    until = clock.now() + driver.engine.options.lease
    with db.snapshot() as session:
        leases = [lease for status, lease in session.execute(
            select(Execution.status, Execution.lease_until)) if status == "running"]
    assert len(leases) == 7 and all(lease == until for lease in leases)


def test_a_tick_that_meets_an_occurrence_made_already_fires_the_others_only(
    collection: Tenant, driver: EngineDriver, receiver: Receiver, clock: FrozenClock,
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


@pytest.fixture
def other(app: Flask, db: Database, clock: FrozenClock, driver: EngineDriver
          ) -> Iterator[Engine]:
    """A second engine node on the same database, its calls made on `driver`'s event loop
    so that the two nodes work at once."""
    made = make_engine(app, db, clock, node="node-b")
    made.loop.close()
    yield made.engine
    driver.loop.run_until_complete(made.engine.actions.close())


# One engine runs on a SQLite home (its file lock says so), so two nodes are PostgreSQL's.
@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_two_nodes_catching_up_together_fire_each_occurrence_once(
    collection: Tenant, driver: EngineDriver, other: Engine, receiver: Receiver,
    clock: FrozenClock, db: Database,
) -> None:
    due_jobs(collection, receiver, clock, 40)
    first, second = loop_of(driver.engine, clock), loop_of(other, clock)

    async def both_catch_up() -> None:
        await asyncio.gather(first.make_and_claim(clock.now()),
                             second.make_and_claim(clock.now()))
        await asyncio.gather(settle(first), settle(second))
        await asyncio.gather(first.record_finished(), second.record_finished())

    driver.loop.run_until_complete(both_catch_up())
    assert_each_job_ran_once(db, receiver, 40)
