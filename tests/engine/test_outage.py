"""Engine nodes through a PostgreSQL outage, on the fake clock: an answer that comes while
the database is away is recorded once it is back, its call is not made again, and no node
takes for dead another whose only fault was the database.

The database is real and the test's own: it refuses connections and ends those it has.
"""

from __future__ import annotations

import asyncio
import io
import logging
import threading
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy.exc import OperationalError

from scheduler.clock import FrozenClock
from scheduler.engine.runner import claim_name
from tests.e2e.support import wait_for
from tests.engine.harness import MakeDriver, NodeDriver, Receiver
from tests.support import JOBS, OutageDatabase, Tenant, outage_database


@pytest.fixture
def outage(home: dict[str, Any]) -> Iterator[OutageDatabase]:
    """The test's own database, holding the home's subscription and certificate."""
    with outage_database(home["home"]) as database:
        yield database


@pytest.fixture
def database_url(outage: OutageDatabase) -> str:
    """Every fixture of the suite (the API, the engine nodes) uses the test's own database."""
    return outage.url


def through_the_outage(node: NodeDriver, clock: FrozenClock, seconds: float) -> None:
    """The clock moves on while the database is away: the node's heartbeats fail."""
    clock.advance(timedelta(seconds=seconds))
    node.run_timers()
    node.settle()


def test_an_answer_that_came_during_an_outage_is_recorded_once_and_not_sent_again(
    collection: Tenant, receiver: Receiver, make_driver: MakeDriver, clock: FrozenClock,
    outage: OutageDatabase, caplog: pytest.LogCaptureFixture
) -> None:
    held = receiver.holds["/held"] = threading.Event()
    job = receiver.job("/held", action={"type": "http", "retryPolicy": {"retryType": "none"},
                                        "request": {"uri": receiver.url("/held"),
                                                    "method": "POST"}})
    assert collection.call("PUT", f"{JOBS}/held", job).status_code == 201
    first, second = make_driver("node-a"), make_driver("node-b")
    first.begin()
    second.begin()
    clock.advance(timedelta(seconds=10))
    first.run_pass()  # the call goes out; its answer is held by the target
    assert wait_for(lambda: len(receiver.requests) == 1, 30)  # on a busy machine, a moment

    outage.cut_off()
    held.set()
    first.settle()  # the answer is in, while the database is away
    with pytest.raises(OperationalError):
        first.record()
    # Longer than a node may stay silent before it is taken for dead: every heartbeat fails.
    dead_after = first.node.options.dead_after.total_seconds()
    with caplog.at_level(logging.WARNING):
        for node in (first, second):
            through_the_outage(node, clock, dead_after + 2)
            node.run_pass()  # fails, logged once per outage
    outage.let_in()

    # The node that beats first after the outage takes nobody's work over, though the other's
    # last heartbeat is old by now: the other was cut off like itself.
    through_the_outage(second, clock, 1)
    second.run_pass()
    second.settle()
    assert len(receiver.requests) == 1, "the call was made again by the other node"
    first.step()
    assert len(receiver.requests) == 1
    [execution] = collection.call("GET", f"{JOBS}/held/executions").get_json()
    assert execution["status"] == "completed" and execution["attempts"] == 1
    assert execution["node"] == "node-a"
    [entry] = collection.call("GET", f"{JOBS}/held/history").get_json()
    assert entry["status"] == "completed"
    passes = [r for r in caplog.records
              if r.getMessage().startswith("engine pass: the database is unavailable")]
    assert len(passes) == 2, "each node logs the outage once"


def test_a_node_that_starts_while_the_database_is_away_waits_for_it(
    collection: Tenant, make_driver: MakeDriver, clock: FrozenClock, outage: OutageDatabase,
    caplog: pytest.LogCaptureFixture
) -> None:
    node = make_driver("node-late")
    outage.cut_off()
    claiming = node.events.create_task(claim_name(node.node, clock, io.StringIO()))
    # Its tries fail while the database is away; it waits, and does not give up.
    for _ in range(300):
        if "engine start: the database is unavailable" in caplog.text:
            break
        node.run(asyncio.wait([claiming], timeout=0.2))
    assert "engine start: the database is unavailable" in caplog.text
    assert not claiming.done()
    outage.let_in()
    node.run(asyncio.wait_for(claiming, timeout=60))
    assert claiming.result() is None
    assert "engine start: the database is back" in caplog.text
