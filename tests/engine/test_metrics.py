"""The engine's metrics and log lines: what a node fired, how late, how it went."""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

import pytest
from scheduler.engine.timers import ManualTimers

from scheduler.clock import FrozenClock
from scheduler.db.session import Database
from tests.engine.conftest import EngineDriver, Receiver
from tests.engine.test_firing import job_to
from tests.engine.test_recovery import loop_of, other, ready_one_call
from tests.support import JOBS, Tenant

__all__ = ["other"]  # the second node's fixture


def sample(driver: EngineDriver, name: str, **labels: str) -> float:
    """A metric's value in the engine's registry (0 when it has no such sample yet)."""
    registry = driver.engine.metrics.registry
    assert registry is not None
    return registry.get_sample_value(name, labels) or 0.0


def test_a_fired_job_counts_its_attempt_and_its_lateness(
    collection: Tenant, driver: EngineDriver, receiver: Receiver, clock: FrozenClock
) -> None:
    collection.call("PUT", f"{JOBS}/once", job_to(receiver))
    clock.advance(timedelta(seconds=13))  # three seconds after its start time
    assert driver.step() == 1
    assert sample(driver, "scheduler_engine_attempts_total", action_type="http",
                  outcome="succeeded") == 1
    assert sample(driver, "scheduler_engine_occurrences_fired_total") == 1
    assert sample(driver, "scheduler_engine_lateness_seconds_count") == 1
    assert sample(driver, "scheduler_engine_lateness_seconds_sum") == pytest.approx(3.0)
    assert sample(driver, "scheduler_engine_lateness_seconds_bucket", le="2.5") == 0
    assert sample(driver, "scheduler_engine_lateness_seconds_bucket", le="5.0") == 1
    assert sample(driver, "scheduler_engine_tick_seconds_count") == 1
    assert sample(driver, "scheduler_engine_recording_seconds_count") == 1


def test_a_failed_attempt_is_counted_and_logged_with_its_job_and_execution(
    collection: Tenant, driver: EngineDriver, receiver: Receiver, clock: FrozenClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    receiver.answers["/down"] = (500, {}, b"broken")
    collection.call("PUT", f"{JOBS}/failing", job_to(receiver, "/down"))
    clock.advance(timedelta(seconds=10))
    with caplog.at_level(logging.INFO, logger="scheduler.engine.node"):
        assert driver.step() == 1
    assert sample(driver, "scheduler_engine_attempts_total", action_type="http",
                  outcome="failed") == 1
    assert sample(driver, "scheduler_engine_attempts_total", action_type="http",
                  outcome="succeeded") == 0
    [line] = [r for r in caplog.records if r.getMessage().startswith("attempt failed")]
    [request] = receiver.requests
    assert vars(line)["job_id"] == "failing"
    assert vars(line)["execution_id"] == request.header("x-ms-execution-tag")
    assert vars(line)["attempt"] == 1 and "500" in line.getMessage()


def test_a_successful_attempt_is_logged_only_at_debug(
    collection: Tenant, driver: EngineDriver, receiver: Receiver, clock: FrozenClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    collection.call("PUT", f"{JOBS}/once", job_to(receiver))
    clock.advance(timedelta(seconds=10))
    with caplog.at_level(logging.INFO, logger="scheduler.engine.node"):
        assert driver.step() == 1
    assert not [r for r in caplog.records if r.getMessage().startswith("attempt")]
    collection.call("PUT", f"{JOBS}/twice", job_to(receiver, startTime="2026-03-01T12:00:20Z"))
    clock.advance(timedelta(seconds=10))
    with caplog.at_level(logging.DEBUG, logger="scheduler.engine.node"):
        assert driver.step() == 1
    [line] = [r for r in caplog.records if r.getMessage().startswith("attempt succeeded")]
    assert vars(line)["job_id"] == "twice"


def test_occurrences_missed_during_downtime_are_counted(
    collection: Tenant, driver: EngineDriver, receiver: Receiver, clock: FrozenClock
) -> None:
    collection.call("PUT", f"{JOBS}/minutely", job_to(
        receiver, recurrence={"frequency": "minute", "interval": 1}))
    clock.advance(timedelta(minutes=10, seconds=10))
    assert driver.step() == 1
    assert sample(driver, "scheduler_engine_missed_occurrences_total") == 10
    assert sample(driver, "scheduler_engine_occurrences_fired_total") == 1


def test_calls_held_and_taken_over_are_counted(
    collection: Tenant, driver: EngineDriver, other: EngineDriver, receiver: Receiver,
    clock: FrozenClock, db: Database,
) -> None:
    loop, _execution_id = ready_one_call(collection, receiver, driver, clock, ManualTimers(clock))
    loop.report_held()
    assert sample(driver, "scheduler_engine_readied_calls") == 1
    assert sample(driver, "scheduler_engine_inflight_calls") == 0
    survivor = loop_of(other, ManualTimers(clock))
    clock.advance(timedelta(seconds=6))  # node-a's heartbeat is 6 s old: it is dead

    async def beat() -> None:
        await survivor.beat()  # the first beat: takes over what dead nodes held
        await survivor.make_and_claim(clock.now())
        survivor.report_held()

    other.loop.run_until_complete(beat())
    assert sample(other, "scheduler_engine_lease_takeovers_total") == 1
    assert sample(other, "scheduler_engine_inflight_calls") == 1
    other.loop.run_until_complete(asyncio.wait(survivor.inflight))
    assert sample(driver, "scheduler_engine_lease_takeovers_total") == 0
