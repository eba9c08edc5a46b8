"""Recovery: a dead node's executions are taken over within seconds, by heartbeat, with their
execution tags; a node whose heartbeat is old sends nothing another may have taken."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta

import pytest
from flask import Flask
from scheduler.engine.timers import FiringLoop, ManualTimers
from sqlalchemy import select, update

from scheduler.clock import FrozenClock
from scheduler.db.models import EngineNode, Execution
from scheduler.db.session import Database
from tests.engine.conftest import EngineDriver, Receiver, make_engine
from tests.engine.test_firing import job_to
from tests.support import JOBS, Tenant


@pytest.fixture
def other(app: Flask, db: Database, clock: FrozenClock) -> Iterator[EngineDriver]:
    """A second engine node on the same database."""
    engine = make_engine(app, db, clock, node="node-b")
    yield engine
    engine.close()


def loop_of(driver: EngineDriver, timers: ManualTimers) -> FiringLoop:
    """A firing loop of this driver's engine, its timers run by hand."""
    return FiringLoop(driver.engine, asyncio.Event(), timers)


def ready_one_call(collection: Tenant, receiver: Receiver, driver: EngineDriver,
                   clock: FrozenClock, timers: ManualTimers) -> tuple[FiringLoop, str]:
    """A job due at 12:00:10, its call readied by `driver`'s node two seconds ahead."""
    collection.call("PUT", f"{JOBS}/soon", job_to(receiver))
    clock.advance(timedelta(seconds=8))  # 12:00:08, within the lookahead
    loop = loop_of(driver, timers)

    async def beat_and_ready() -> None:
        await loop.beat()
        await loop.make_and_claim(clock.now())

    driver.loop.run_until_complete(beat_and_ready())
    [execution_id] = loop.waiting
    return loop, execution_id


def statuses(db: Database) -> list[tuple[str, str | None]]:
    """Every execution's status and lease owner."""
    with db.snapshot() as session:
        return [(e.status, e.lease_owner) for e in session.scalars(select(Execution))]


def test_a_dead_nodes_readied_call_is_taken_over_with_its_tag_once_its_heartbeat_is_old(
    collection: Tenant, driver: EngineDriver, other: EngineDriver, receiver: Receiver,
    clock: FrozenClock, db: Database,
) -> None:
    timers = ManualTimers(clock)
    _dead, execution_id = ready_one_call(collection, receiver, driver, clock, timers)
    # node-a dies here: its loop makes no more passes, its heartbeat ages.
    survivor = loop_of(other, ManualTimers(clock))

    async def beat_and_claim() -> set[str]:
        await survivor.beat()
        await survivor.make_and_claim(clock.now())
        return set(survivor.waiting)

    clock.advance(timedelta(seconds=1))
    assert other.loop.run_until_complete(beat_and_claim()) == set(), "node-a is alive"
    assert statuses(db) == [("running", "node-a")]
    clock.advance(timedelta(seconds=5))  # 12:00:14: node-a's heartbeat is 6 s old
    assert other.loop.run_until_complete(beat_and_claim()) == set()
    assert not survivor.waiting and len(survivor.inflight) == 1, "late: sent at once"
    other.loop.run_until_complete(asyncio.wait(survivor.inflight))
    [request] = receiver.requests
    assert request.header("x-ms-execution-tag") == execution_id
    with db.snapshot() as session:
        assert list(session.scalars(select(EngineNode.id))) == ["node-b"]


def test_a_node_whose_heartbeat_is_old_does_not_send_a_call_another_node_took_over(
    collection: Tenant, driver: EngineDriver, other: EngineDriver, receiver: Receiver,
    clock: FrozenClock, db: Database,
) -> None:
    timers = ManualTimers(clock)
    paused, execution_id = ready_one_call(collection, receiver, driver, clock, timers)
    clock.advance(timedelta(seconds=6))  # node-a stalls past 12:00:10; node-b takes over
    survivor = loop_of(other, ManualTimers(clock))

    async def take_over() -> None:
        await survivor.beat()
        await survivor.make_and_claim(clock.now())
        await asyncio.wait(survivor.inflight)

    other.loop.run_until_complete(take_over())

    async def wake_up_and_pass_the_instant() -> None:
        assert timers.run_due() == 1
        assert paused.checks, "not sent at once: node-a's heartbeat is too old"
        await asyncio.gather(*paused.checks)

    driver.loop.run_until_complete(wake_up_and_pass_the_instant())
    assert paused.waiting == {} and paused.inflight == {}
    [request] = receiver.requests
    assert request.header("x-ms-execution-tag") == execution_id
    assert statuses(db) == [("running", "node-b")]


def test_a_node_whose_heartbeat_is_old_sends_what_it_still_holds_once_it_renewed_it(
    collection: Tenant, driver: EngineDriver, receiver: Receiver, clock: FrozenClock,
) -> None:
    timers = ManualTimers(clock)
    paused, execution_id = ready_one_call(collection, receiver, driver, clock, timers)
    clock.advance(timedelta(seconds=6))  # stalled, but no other node took anything

    async def wake_up_and_pass_the_instant() -> None:
        assert timers.run_due() == 1
        await asyncio.gather(*paused.checks)
        await asyncio.wait(paused.inflight)

    driver.loop.run_until_complete(wake_up_and_pass_the_instant())
    [request] = receiver.requests
    assert request.header("x-ms-execution-tag") == execution_id


@pytest.mark.parametrize(("sole", "taken"), [(True, True), (False, False)])
def test_a_starting_node_takes_over_at_once_what_a_node_it_alone_replaces_held(
    collection: Tenant, driver: EngineDriver, other: EngineDriver, receiver: Receiver,
    clock: FrozenClock, db: Database, sole: bool, taken: bool,
) -> None:
    timers = ManualTimers(clock)
    ready_one_call(collection, receiver, driver, clock, timers)
    # node-a was killed; node-b starts at once. With `sole` (SQLite: the file lock says no
    # other engine runs), node-a's heartbeat, however young, is that of a dead node.
    other.engine.options = replace(other.engine.options, sole=sole)
    starting = loop_of(other, ManualTimers(clock))
    other.loop.run_until_complete(starting.beat())
    assert statuses(db) == [("running", None if taken else "node-a")]


def test_a_starting_node_takes_over_executions_of_nodes_without_a_heartbeat(
    collection: Tenant, driver: EngineDriver, other: EngineDriver, receiver: Receiver,
    clock: FrozenClock, db: Database,
) -> None:
    ready_one_call(collection, receiver, driver, clock, ManualTimers(clock))
    with db.transaction() as session:  # held by a node that never beat (an older version)
        session.execute(update(Execution).values(lease_owner="node-old"))
    running = loop_of(other, ManualTimers(clock))
    other.loop.run_until_complete(running.beat())
    assert statuses(db) == [("running", None)]
    with db.transaction() as session:
        session.execute(update(Execution).values(lease_owner="node-old"))
    other.loop.run_until_complete(running.beat())
    assert statuses(db) == [("running", "node-old")], "only a starting node looks"


def test_a_stopping_node_takes_its_heartbeat_with_it(
    driver: EngineDriver, clock: FrozenClock, db: Database,
) -> None:
    loop = loop_of(driver, ManualTimers(clock))
    stop = asyncio.Event()
    stop.set()
    driver.loop.run_until_complete(loop.beat())
    driver.loop.run_until_complete(loop.run(stop))
    with db.snapshot() as session:
        assert list(session.scalars(select(EngineNode.id))) == []
