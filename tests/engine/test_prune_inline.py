"""Retention of inline runs: each collection keeps its newest runs of inline definitions, for
as long as history is kept, as a job keeps its executions; the engine's pass prunes them."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from scheduler.clock import FrozenClock
from scheduler.engine.loop import PRUNE_EVERY
from tests.engine.harness import MakeDriver, Receiver
from tests.support import Tenant, collection_xml

COLLECTIONS = "/cloudservices/cs1/resources/scheduler/~/jobcollections"


def inline_call(receiver: Receiver) -> dict[str, Any]:
    """An inline run that calls the receiver."""
    return {"action": {"type": "http", "request": {"uri": receiver.url("/inline"),
                                                   "method": "POST"}}}


def inline_waiting(receiver: Receiver) -> dict[str, Any]:
    """An inline run that waits, paused, for its manual first step to be resumed."""
    step = {"name": "approve", "manual": True, "action": inline_call(receiver)["action"]}
    return {"action": {"type": "sequence", "steps": [step]}}


def start(tenant: Tenant, collection: str, body: dict[str, Any]) -> str:
    """Run an inline definition in the collection; its execution id."""
    response = tenant.call("POST", f"{COLLECTIONS}/{collection}/executions", body)
    assert response.status_code == 202, response.data
    return str(response.get_json()["id"])


def inline_runs(tenant: Tenant, collection: str) -> list[str]:
    """The ids of the collection's inline runs, newest first."""
    found = tenant.call("GET", f"{COLLECTIONS}/{collection}/executions").get_json()
    return [execution["id"] for execution in found]


def test_each_collection_keeps_its_newest_inline_runs_and_drops_old_ones(
    collection: Tenant, receiver: Receiver, make_driver: MakeDriver, clock: FrozenClock
) -> None:
    made = collection.call("PUT", "/cloudservices/cs1/resources/scheduler/jobcollections/jc2",
                           collection_xml())
    assert made.status_code == 202
    driver = make_driver(history_keep=3)
    waiting = start(collection, "jc1", inline_waiting(receiver))  # the oldest, and open
    finished = [start(collection, "jc1", inline_call(receiver)) for _ in range(5)]
    elsewhere = [start(collection, "jc2", inline_call(receiver)) for _ in range(2)]
    assert driver.step() == 7
    clock.advance(PRUNE_EVERY + timedelta(seconds=1))
    driver.step()  # the pass prunes
    # The newest three stay, the open run too however old; the other collection's are its own.
    assert inline_runs(collection, "jc1") == [*reversed(finished[-3:]), waiting]
    assert inline_runs(collection, "jc2") == list(reversed(elsewhere))
    clock.advance(timedelta(days=61))
    driver.step()
    assert inline_runs(collection, "jc1") == [waiting]
    assert inline_runs(collection, "jc2") == []
