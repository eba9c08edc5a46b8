"""The engine's metrics and log lines: what a node fired, how late, how it went."""

from __future__ import annotations

import logging
import threading
from datetime import timedelta

import pytest

from scheduler.clock import FrozenClock
from tests.engine.harness import NodeDriver, Receiver
from tests.support import JOBS, Tenant

RECORDER = "scheduler.engine.recorder"  # the logger of attempts' log lines


def test_a_fired_job_counts_its_attempt_and_its_lateness(
    collection: Tenant, driver: NodeDriver, receiver: Receiver, clock: FrozenClock
) -> None:
    collection.call("PUT", f"{JOBS}/once", receiver.job())
    clock.advance(timedelta(seconds=13))  # three seconds after its start time
    assert driver.step() == 1
    assert driver.sample("scheduler_engine_attempts_total", action_type="http",
                         outcome="succeeded") == 1
    assert driver.sample("scheduler_engine_occurrences_fired_total") == 1
    assert driver.sample("scheduler_engine_lateness_seconds_count") == 1
    assert driver.sample("scheduler_engine_lateness_seconds_sum") == pytest.approx(3.0)
    assert driver.sample("scheduler_engine_lateness_seconds_bucket", le="2.5") == 0
    assert driver.sample("scheduler_engine_lateness_seconds_bucket", le="5.0") == 1
    assert driver.sample("scheduler_engine_tick_seconds_count") == 1
    assert driver.sample("scheduler_engine_recording_seconds_count") == 1


def test_a_failed_attempt_is_counted_and_logged_with_its_job_and_execution(
    collection: Tenant, driver: NodeDriver, receiver: Receiver, clock: FrozenClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    receiver.answers["/down"] = (500, {}, b"broken")
    collection.call("PUT", f"{JOBS}/failing", receiver.job("/down"))
    clock.advance(timedelta(seconds=10))
    with caplog.at_level(logging.INFO, logger=RECORDER):
        assert driver.step() == 1
    assert driver.sample("scheduler_engine_attempts_total", action_type="http",
                         outcome="failed") == 1
    assert driver.sample("scheduler_engine_attempts_total", action_type="http",
                         outcome="succeeded") == 0
    [line] = [r for r in caplog.records if r.getMessage().startswith("attempt failed")]
    [request] = receiver.requests
    assert vars(line)["job_id"] == "failing"
    assert vars(line)["execution_id"] == request.header("x-ms-execution-tag")
    assert vars(line)["attempt"] == 1 and "500" in line.getMessage()


def test_a_successful_attempt_is_logged_only_at_debug(
    collection: Tenant, driver: NodeDriver, receiver: Receiver, clock: FrozenClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    collection.call("PUT", f"{JOBS}/once", receiver.job())
    clock.advance(timedelta(seconds=10))
    with caplog.at_level(logging.INFO, logger=RECORDER):
        assert driver.step() == 1
    assert not [r for r in caplog.records if r.getMessage().startswith("attempt")]
    collection.call("PUT", f"{JOBS}/twice", receiver.job(startTime="2026-03-01T12:00:20Z"))
    clock.advance(timedelta(seconds=10))
    with caplog.at_level(logging.DEBUG, logger=RECORDER):
        assert driver.step() == 1
    [line] = [r for r in caplog.records if r.getMessage().startswith("attempt succeeded")]
    assert vars(line)["job_id"] == "twice"


def test_occurrences_missed_during_downtime_are_counted(
    collection: Tenant, driver: NodeDriver, receiver: Receiver, clock: FrozenClock
) -> None:
    collection.call("PUT", f"{JOBS}/minutely", receiver.job(
        recurrence={"frequency": "minute", "interval": 1}))
    clock.advance(timedelta(minutes=10, seconds=10))
    assert driver.step() == 1
    assert driver.sample("scheduler_engine_missed_occurrences_total") == 10
    assert driver.sample("scheduler_engine_occurrences_fired_total") == 1


def test_calls_held_and_taken_over_are_counted(
    collection: Tenant, driver: NodeDriver, other: NodeDriver, receiver: Receiver,
    clock: FrozenClock,
) -> None:
    collection.call("PUT", f"{JOBS}/soon", receiver.job())  # due at 12:00:10
    clock.advance(timedelta(seconds=8))  # 12:00:08, within the lookahead
    driver.run_pass()  # node-a readies the call
    assert driver.sample("scheduler_engine_readied_calls") == 1
    assert driver.sample("scheduler_engine_inflight_calls") == 0
    clock.advance(timedelta(seconds=6))  # node-a's heartbeat is 6 s old: it is dead
    receiver.holds["/hook"] = answer = threading.Event()  # in flight until answered
    try:
        other.run_pass()  # its first heartbeat takes over what dead nodes held; it sends it
        assert other.sample("scheduler_engine_lease_takeovers_total") == 1
        assert other.sample("scheduler_engine_inflight_calls") == 1
    finally:
        answer.set()
    other.settle()
    assert len(receiver.requests) == 1
    assert driver.sample("scheduler_engine_lease_takeovers_total") == 0
