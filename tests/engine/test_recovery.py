"""Recovery: a dead node's executions are taken over within seconds, by heartbeat, with their
execution tags; a node whose heartbeat is old sends nothing another may have taken."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from sqlalchemy import select, update

from scheduler.clock import FrozenClock
from scheduler.db.models import EngineNode, Execution
from scheduler.db.session import Database
from tests.engine.harness import MakeDriver, NodeDriver, Receiver
from tests.support import JOBS, Tenant


def ready_one_call(collection: Tenant, receiver: Receiver, driver: NodeDriver,
                   clock: FrozenClock, db: Database) -> str:
    """A job due at 12:00:10, its call readied by `driver`'s node two seconds ahead; the id
    of its execution."""
    collection.call("PUT", f"{JOBS}/soon", receiver.job())
    clock.advance(timedelta(seconds=8))  # 12:00:08, within the lookahead
    driver.run_pass()  # its first heartbeat, then the pass that readies the call
    assert driver.held_calls() == (1, 0)
    with db.snapshot() as session:
        [execution_id] = session.scalars(select(Execution.id))
    return execution_id


def statuses(db: Database) -> list[tuple[str, str | None]]:
    """Every execution's status and lease owner."""
    with db.snapshot() as session:
        return [(e.status, e.lease_owner) for e in session.scalars(select(Execution))]


def node_ids(db: Database) -> list[str]:
    """The nodes that have a heartbeat."""
    with db.snapshot() as session:
        return list(session.scalars(select(EngineNode.id)))


def test_a_dead_nodes_readied_call_is_taken_over_with_its_tag_once_its_heartbeat_is_old(
    collection: Tenant, driver: NodeDriver, other: NodeDriver, receiver: Receiver,
    clock: FrozenClock, db: Database,
) -> None:
    execution_id = ready_one_call(collection, receiver, driver, clock, db)
    # node-a dies here: it is stepped no more, its heartbeat ages.
    clock.advance(timedelta(seconds=1))
    other.run_pass()  # node-b starts: its first heartbeat, then a pass
    assert other.held_calls() == (0, 0), "node-a is alive"
    assert statuses(db) == [("running", "node-a")]
    clock.advance(timedelta(seconds=5))  # 12:00:14: node-a's heartbeat is 6 s old
    assert other.run_timers() == 1  # node-b's next heartbeat
    other.settle()
    assert other.wants_a_pass, "a heartbeat that takes over asks for a pass at once"
    receiver.holds["/hook"] = answer = threading.Event()  # in flight until answered
    try:
        other.run_pass()
        assert other.held_calls() == (0, 1), "late: sent at once"
    finally:
        answer.set()
    other.settle()
    [request] = receiver.requests
    assert request.header("x-ms-execution-tag") == execution_id
    assert node_ids(db) == ["node-b"]


def test_a_node_whose_heartbeat_is_old_does_not_send_a_call_another_node_took_over(
    collection: Tenant, driver: NodeDriver, other: NodeDriver, receiver: Receiver,
    clock: FrozenClock, db: Database,
) -> None:
    execution_id = ready_one_call(collection, receiver, driver, clock, db)
    clock.advance(timedelta(seconds=6))  # node-a stalls past 12:00:10; node-b takes over
    other.run_pass()  # its first heartbeat takes the call over, and the pass sends it
    other.settle()
    assert len(receiver.requests) == 1
    # node-a wakes up: its heartbeat's timer and the readied call's instant are due.
    assert driver.run_timers() == 2
    assert driver.held_calls() == (1, 0), \
        "not sent at once: node-a's heartbeat is too old"
    driver.settle()  # it renews its heartbeat, and finds that it holds the call no more
    assert driver.held_calls() == (0, 0)
    [request] = receiver.requests
    assert request.header("x-ms-execution-tag") == execution_id
    assert statuses(db) == [("running", "node-b")]


def test_a_node_whose_heartbeat_is_old_sends_what_it_still_holds_once_it_renewed_it(
    collection: Tenant, driver: NodeDriver, receiver: Receiver, clock: FrozenClock,
    db: Database,
) -> None:
    execution_id = ready_one_call(collection, receiver, driver, clock, db)
    clock.advance(timedelta(seconds=6))  # stalled, but no other node took anything
    assert driver.run_timers() == 2  # its heartbeat's timer and the readied call's instant
    assert driver.held_calls() == (1, 0), "its heartbeat is renewed first"
    assert receiver.requests == []
    driver.settle()
    [request] = receiver.requests
    assert request.header("x-ms-execution-tag") == execution_id


@pytest.mark.parametrize(("sole", "taken"), [(True, True), (False, False)])
def test_a_starting_node_takes_over_at_once_what_a_node_it_alone_replaces_held(
    collection: Tenant, driver: NodeDriver, make_driver: MakeDriver, receiver: Receiver,
    clock: FrozenClock, db: Database, sole: bool, taken: bool,
) -> None:
    ready_one_call(collection, receiver, driver, clock, db)
    # node-a was killed; node-b starts at once. With `sole` (SQLite: the file lock says no
    # other engine runs), node-a's heartbeat, however young, is that of a dead node.
    starting = make_driver("node-b", events=driver.events, sole=sole)
    starting.begin()
    assert statuses(db) == [("running", None if taken else "node-a")]


def test_a_starting_node_takes_over_executions_of_nodes_without_a_heartbeat(
    collection: Tenant, driver: NodeDriver, other: NodeDriver, receiver: Receiver,
    clock: FrozenClock, db: Database,
) -> None:
    ready_one_call(collection, receiver, driver, clock, db)
    with db.transaction() as session:  # held by a node that never beat (an older version)
        session.execute(update(Execution).values(lease_owner="node-old"))
    other.begin()
    assert statuses(db) == [("running", None)]
    with db.transaction() as session:
        session.execute(update(Execution).values(lease_owner="node-old"))
    clock.advance(other.node.options.heartbeat)
    assert other.run_timers() == 1  # node-b's next heartbeat
    other.settle()
    assert statuses(db) == [("running", "node-old")], "only a starting node looks"


def test_a_stopping_node_takes_its_heartbeat_with_it(driver: NodeDriver, db: Database) -> None:
    driver.begin()
    assert node_ids(db) == ["node-a"]
    driver.stop()
    assert node_ids(db) == []
