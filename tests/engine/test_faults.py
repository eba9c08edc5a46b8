"""One job's fault stays that job's: a job whose stored version cannot run is faulted with the
reason, and every other job, run-now included, goes on."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import select, update

from scheduler.actions.base import ExecutionContext
from scheduler.actions.http import HttpCaller, HttpExecutor
from scheduler.actions.registry import standard_actions
from scheduler.clock import FrozenClock
from scheduler.db.models import Execution, Job
from scheduler.db.session import Database
from scheduler.domain.jobs import Action, HttpAction
from scheduler.security.secrets import SecretBox
from tests.engine.harness import MakeDriver, NodeDriver, Receiver
from tests.support import JOBS, Tenant

PASSWORD = "hunter2-not-for-logs"

# What `/readyz` says when no execution waits for engine nodes.
NO_WAITING = {"executionsWaitingForNodes": {"count": 0, "nodes": []}}


def with_password(job: dict[str, Any]) -> dict[str, Any]:
    """The job with Basic authentication, its password a secret sealed at rest."""
    job["action"]["request"]["authentication"] = {
        "type": "Basic", "username": "ops", "password": PASSWORD}
    return job


def reseal_with_another_key(db: Database, app: Flask, job_id: str) -> None:
    """Seal a job's secrets with a key this home does not have, as a home copied wrongly
    or a row from another home would hold them."""
    box: SecretBox = app.extensions["scheduler"].box
    stranger = SecretBox([SecretBox.new_key()])
    with db.transaction() as session:
        job = session.scalars(select(Job).where(Job.job_id == job_id)).one()
        job.secrets = stranger.seal(box.open(job.secrets))


def break_definition(db: Database, job_id: str) -> None:
    """Store a definition that no longer reads: an http action without its request."""
    broken = ('{"v": 1, "start": null, "recurrence": null, "parameters": {}, '
              '"action": {"kind": "http", "retry": null}, "error_action": null}')
    with db.transaction() as session:
        session.execute(update(Job).where(Job.job_id == job_id).values(definition=broken))


def job_of(collection: Tenant, job_id: str) -> dict[str, Any]:
    """The job as the API shows it."""
    found: dict[str, Any] = collection.call("GET", f"{JOBS}/{job_id}").get_json()
    return found


def history(collection: Tenant, job_id: str) -> list[dict[str, Any]]:
    """The job's history, newest first."""
    entries: list[dict[str, Any]] = collection.call("GET", f"{JOBS}/{job_id}/history").get_json()
    return entries


def unrunnable(driver: NodeDriver, reason: str) -> float:
    """How many attempts the node failed before their call, for this reason."""
    return driver.sample("scheduler_engine_unrunnable_attempts_total", reason=reason)


@pytest.mark.parametrize(("break_it", "reason", "details"), [
    ("secret", "secret", "do not open with this home's keys"),
    ("definition", "definition", "stored definition does not read"),
])
def test_a_job_that_cannot_run_is_faulted_alone_and_the_others_fire(
    collection: Tenant, driver: NodeDriver, receiver: Receiver, clock: FrozenClock,
    db: Database, app: Flask, caplog: pytest.LogCaptureFixture, break_it: str, reason: str,
    details: str,
) -> None:
    for job_id in ("healthy", "broken"):  # both due at 12:00:10
        created = collection.call("PUT", f"{JOBS}/{job_id}",
                                  with_password(receiver.job(f"/{job_id}")))
        assert created.status_code == 201, created.data
    if break_it == "secret":
        reseal_with_another_key(db, app, "broken")
    else:
        break_definition(db, "broken")
    clock.advance(timedelta(seconds=10))
    with caplog.at_level(logging.WARNING, logger="scheduler.engine.node"):
        assert driver.step() == 1
    assert [request.path for request in receiver.requests] == ["/healthy"]
    assert job_of(collection, "healthy")["state"] == "completed"
    broken = job_of(collection, "broken")
    assert broken["state"] == "faulted" and details in broken["stateDetails"]
    [entry] = history(collection, "broken")
    assert entry["status"] == "failed" and details in entry["message"]
    assert PASSWORD not in entry["message"] and PASSWORD not in broken["stateDetails"]
    [line] = [r for r in caplog.records if "cannot run" in r.getMessage()]
    assert (vars(line)["job_id"], vars(line)["collection"]) == ("broken", "jc1")
    assert PASSWORD not in caplog.text
    assert unrunnable(driver, reason) == 1
    clock.advance(timedelta(minutes=1))
    assert driver.step() == 0
    assert unrunnable(driver, reason) == 1, "a faulted job is not read again on every pass"
    assert len(history(collection, "broken")) == 1


def readiness(app: Flask) -> tuple[int, dict[str, Any]]:
    """What `/readyz` answers, as a load balancer sees it: no client certificate."""
    response = app.test_client().get("/readyz")
    body: dict[str, Any] = response.get_json()
    return response.status_code, body


def test_readyz_counts_a_job_faulted_in_the_last_minute_and_stays_ready(
    collection: Tenant, driver: NodeDriver, receiver: Receiver, clock: FrozenClock,
    db: Database, app: Flask,
) -> None:
    for job_id in ("healthy", "broken"):  # both due at 12:00:10
        created = collection.call("PUT", f"{JOBS}/{job_id}",
                                  with_password(receiver.job(f"/{job_id}")))
        assert created.status_code == 201, created.data
    reseal_with_another_key(db, app, "broken")
    clock.advance(timedelta(seconds=10))
    assert driver.step() == 1
    assert readiness(app) == (200, {"status": "ready", "database": "ok", "engine": "ok",
                                    "engines": 1, "unrunnableAttemptsLastMinute": {}, **NO_WAITING})
    # The node's next heartbeat, a second later, carries the count to the API.
    clock.advance(timedelta(seconds=1))
    driver.step()
    assert readiness(app) == (200, {"status": "ready", "database": "ok", "engine": "ok",
                                    "engines": 1, "unrunnableAttemptsLastMinute": {"secret": 1},
                                    **NO_WAITING})
    clock.advance(timedelta(seconds=58))  # 12:01:09: the fault is 59 s old
    driver.step()
    assert readiness(app)[1]["unrunnableAttemptsLastMinute"] == {"secret": 1}
    clock.advance(timedelta(seconds=2))  # 12:01:11: a minute after the heartbeat that told
    driver.step()
    assert readiness(app) == (200, {"status": "ready", "database": "ok", "engine": "ok",
                                    "engines": 1, "unrunnableAttemptsLastMinute": {}, **NO_WAITING})
    assert unrunnable(driver, "secret") == 1  # the metric counts on; the figure is a window


def test_a_run_now_of_a_job_whose_secrets_do_not_open_fails_alone(
    collection: Tenant, driver: NodeDriver, receiver: Receiver, db: Database, app: Flask,
) -> None:
    for job_id in ("healthy", "broken"):  # due in a day: only run-now fires them
        job = with_password(receiver.job(f"/{job_id}", startTime="2026-03-02T12:00:00Z"))
        assert collection.call("PUT", f"{JOBS}/{job_id}", job).status_code == 201
    reseal_with_another_key(db, app, "broken")
    runs = {job_id: collection.call("POST", f"{JOBS}/{job_id}/run").get_json()["id"]
            for job_id in ("healthy", "broken")}
    assert driver.step() == 1
    assert [request.path for request in receiver.requests] == ["/healthy"]
    with db.snapshot() as session:
        failed = session.get(Execution, runs["broken"])
        assert failed is not None and failed.status == "failed"
        assert "do not open with this home's keys" in (failed.message or "")
        assert failed.lease_owner is None
    assert job_of(collection, "broken")["state"] == "faulted"
    assert unrunnable(driver, "secret") == 1


class PreparesBadly(HttpExecutor):
    """The HTTP executor, but its preparation of calls to `/unpreparable` breaks."""

    def prepare(self, action: Action, context: ExecutionContext) -> Any:
        """Break on `/unpreparable`, with an error whose text holds a secret."""
        assert isinstance(action, HttpAction)
        if action.uri.endswith("/unpreparable"):
            raise RuntimeError(f"cannot encode {PASSWORD}")
        return super().prepare(action, context)


def test_a_call_that_cannot_be_prepared_fails_its_attempt_alone_saying_so(
    collection: Tenant, make_driver: MakeDriver, receiver: Receiver, clock: FrozenClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    actions = standard_actions(HttpCaller(allow_private_networks=True))
    actions.register(PreparesBadly(HttpCaller(allow_private_networks=True)), "http", "https")
    driver = make_driver(actions=actions)
    for job_id in ("healthy", "unpreparable"):
        job = receiver.job(f"/{job_id}")
        job["action"]["retryPolicy"] = {"retryType": "none"}
        assert collection.call("PUT", f"{JOBS}/{job_id}", job).status_code == 201
    clock.advance(timedelta(seconds=10))
    with caplog.at_level(logging.ERROR, logger="scheduler.engine.node"):
        assert driver.step() == 2
    assert [request.path for request in receiver.requests] == ["/healthy"]
    [entry] = history(collection, "unpreparable")
    assert entry["status"] == "failed" and "could not be prepared" in entry["message"]
    assert PASSWORD not in entry["message"]
    [line] = [r for r in caplog.records if "could not be prepared" in r.getMessage()]
    assert vars(line)["job_id"] == "unpreparable"
    assert unrunnable(driver, "action") == 1

