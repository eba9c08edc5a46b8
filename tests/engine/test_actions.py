"""Actions behind one interface: an executor registered for a type is what the engine runs."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from flask import Flask
from sqlalchemy import select

from scheduler.actions.http import HttpCaller, HttpExecutor
from scheduler.actions.registry import ActionRegistry, standard_actions
from scheduler.actions.stub import StubExecutor
from scheduler.app import create_app
from scheduler.clock import FrozenClock
from scheduler.db.models import Execution
from scheduler.db.session import Database
from scheduler.domain.jobs import RedisAction
from scheduler.settings import BrokerSettings, Settings
from tests.engine.harness import MakeDriver
from tests.support import CLOUD_SERVICE_XML, JOBS, collection_xml, new_tenant


def app_with_broker(settings: Settings, clock: FrozenClock, db: Database) -> Flask:
    """The API with one configured broker, so that jobs may name it."""
    configured = replace(settings, brokers={"local": BrokerSettings("redis://127.0.0.1:6379")})
    return create_app(configured, clock, db=db, background=False)


def test_an_executor_registered_for_a_type_runs_its_jobs_with_retries_and_history(
    settings: Settings, clock: FrozenClock, db: Database, make_driver: MakeDriver,
) -> None:
    app = app_with_broker(settings, clock, db)
    tenant = new_tenant(app, db, clock)
    assert tenant.call("PUT", "/cloudservices/cs1", CLOUD_SERVICE_XML).status_code == 202
    assert tenant.call("PUT", "/cloudservices/cs1/resources/scheduler/jobcollections/jc1",
                       collection_xml()).status_code == 202
    job = {"startTime": "2026-03-01T12:00:10Z", "parameters": {"who": "world"},
           "action": {"type": "redis", "redisMessage": {
               "broker": "local", "stream": "events", "message": "hi {{parameters.who}}"},
               "retryPolicy": {"retryType": "fixed", "retryInterval": "PT30S",
                               "retryCount": 1}}}
    assert tenant.call("PUT", f"{JOBS}/queued", job).status_code == 201
    stub = StubExecutor(outcomes=[False, True])
    actions = standard_actions(HttpCaller(allow_private_networks=True))
    actions.register(stub, "redis")
    driver = make_driver(actions=actions, app=app)
    clock.advance(timedelta(seconds=10))
    assert driver.step() == 1
    clock.advance(timedelta(seconds=30))
    assert driver.step() == 1
    first, second = stub.calls
    assert isinstance(first.action, RedisAction) and first.action.stream == "events"
    assert first.context.job_id == "queued" and first.context.parameters == {"who": "world"}
    assert first.context.execution_id == second.context.execution_id
    history = tenant.call("GET", f"{JOBS}/queued/history").get_json()
    assert sorted(entry["message"] for entry in history) == [
        "Stub Action - redis failed", "Stub Action - redis succeeded"]
    assert tenant.call("GET", f"{JOBS}/queued").get_json()["state"] == "completed"
    with db.snapshot() as session:
        [execution] = session.scalars(select(Execution))
    assert execution.status == "completed" and execution.id == first.context.execution_id


def test_an_action_type_with_no_executor_fails_its_attempt_with_a_clear_message(
    settings: Settings, clock: FrozenClock, db: Database, make_driver: MakeDriver,
) -> None:
    app = app_with_broker(settings, clock, db)
    tenant = new_tenant(app, db, clock)
    tenant.call("PUT", "/cloudservices/cs1", CLOUD_SERVICE_XML)
    tenant.call("PUT", "/cloudservices/cs1/resources/scheduler/jobcollections/jc1",
                collection_xml())
    job = {"startTime": "2026-03-01T12:00:10Z",
           "action": {"type": "redis", "redisMessage": {
               "broker": "local", "stream": "events", "message": "hi"},
               "retryPolicy": {"retryType": "none"}}}
    assert tenant.call("PUT", f"{JOBS}/queued", job).status_code == 201
    http_only = ActionRegistry()
    http_only.register(HttpExecutor(HttpCaller(allow_private_networks=True)), "http")
    driver = make_driver(actions=http_only, app=app)
    clock.advance(timedelta(seconds=10))
    assert driver.step() == 1
    [entry] = tenant.call("GET", f"{JOBS}/queued/history").get_json()
    assert entry["status"] == "failed"
    assert entry["message"] == "redis actions are not supported by this version of the engine"
