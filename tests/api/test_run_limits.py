"""Limits on runs started by hand: run now per job and inline runs per collection, at the rate
the collection's plan and quota let a job recur with a burst, and a bound on open ones;
refused with 429 and Retry-After, nothing stored, on every API instance of one database."""

from __future__ import annotations

import threading
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest
from flask import Flask
from werkzeug.test import TestResponse

from scheduler.app import create_app
from scheduler.clock import FrozenClock
from scheduler.db.session import Database
from scheduler.settings import Settings, SettingsError, load_settings
from tests.support import (
    CLOUD_SERVICE_XML,
    JOBS,
    Tenant,
    client_with_certificate,
    collection_xml,
    http_job,
    new_tenant,
)

COLLECTION = "/cloudservices/cs1/resources/scheduler/~/jobcollections/jc1"
INLINE = f"{COLLECTION}/executions"
HOURLY_QUOTA = ("<Quota><MaxRecurrence><Frequency>Hour</Frequency><Interval>1</Interval>"
                "</MaxRecurrence></Quota>")


def with_plan(settings: Settings, plan: str, **limits: Any) -> Settings:
    """The settings with one plan's limits changed."""
    return replace(settings, plans={**settings.plans,
                                    plan: replace(settings.plans[plan], **limits)})


def tenant_with_collection(app: Flask, db: Database, clock: FrozenClock, plan: str,
                           quota: str = "") -> Tenant:
    """A new tenant of the app, with cloud service cs1 holding collection jc1 on `plan` and
    its job j1."""
    tenant = new_tenant(app, db, clock)
    assert tenant.call("PUT", "/cloudservices/cs1", CLOUD_SERVICE_XML).status_code == 202
    made = tenant.call("PUT", "/cloudservices/cs1/resources/scheduler/jobcollections/jc1",
                       collection_xml(plan, quota))
    assert made.status_code == 202, made.data
    assert tenant.call("PUT", f"{JOBS}/j1", http_job()).status_code == 201
    return tenant


def run_now(tenant: Tenant) -> TestResponse:
    """POST .../jobs/j1/run."""
    return tenant.call("POST", f"{JOBS}/j1/run")


def run_inline(tenant: Tenant) -> TestResponse:
    """POST .../jobcollections/jc1/executions with an HTTP action."""
    return tenant.call("POST", INLINE, {"action": http_job()["action"]})


def executions_of_j1(tenant: Tenant) -> list[dict[str, Any]]:
    """The executions of job j1, newest first."""
    found: list[dict[str, Any]] = tenant.call("GET", f"{JOBS}/j1/executions").get_json()
    return found


def assert_too_many(response: TestResponse, retry_after: int, *named: str) -> None:
    """A 429 TooManyRequests saying when to try again, its message naming each of `named`."""
    assert response.status_code == 429, response.data
    assert response.headers["Retry-After"] == str(retry_after)
    error = response.get_json()["error"]
    assert error["code"] == "TooManyRequests"
    for text in named:
        assert text in error["message"]


@pytest.fixture
def free(app: Flask, db: Database, clock: FrozenClock) -> Tenant:
    """A tenant whose collection jc1 is on the Free plan (jobs at most hourly)."""
    return tenant_with_collection(app, db, clock, "Free")


def test_run_now_past_the_burst_gets_429_with_retry_after_and_nothing_stored(
    free: Tenant, clock: FrozenClock
) -> None:
    assert [run_now(free).status_code for _ in range(10)] == [202] * 10
    assert_too_many(run_now(free), 3600, "the job j1", "10 at once", "every 1 hour")
    assert len(executions_of_j1(free)) == 10
    clock.advance(timedelta(minutes=59))
    assert_too_many(run_now(free), 60)
    clock.advance(timedelta(minutes=1))
    assert run_now(free).status_code == 202  # one run back after an interval
    assert_too_many(run_now(free), 3600)
    assert len(executions_of_j1(free)) == 11


def test_the_run_now_burst_is_full_again_after_a_quiet_stretch(
    free: Tenant, clock: FrozenClock
) -> None:
    assert [run_now(free).status_code for _ in range(10)] == [202] * 10
    clock.advance(timedelta(hours=10))
    assert [run_now(free).status_code for _ in range(10)] == [202] * 10
    assert_too_many(run_now(free), 3600)


def test_the_run_now_rate_follows_the_collection_quota_and_the_configured_burst(
    settings: Settings, clock: FrozenClock, db: Database
) -> None:
    app = create_app(with_plan(settings, "Standard", run_now_burst=2), clock, db=db,
                     background=False)
    tenant = tenant_with_collection(app, db, clock, "Standard", HOURLY_QUOTA)
    assert [run_now(tenant).status_code for _ in range(2)] == [202] * 2
    assert_too_many(run_now(tenant), 3600, "2 at once", "every 1 hour")


def test_the_run_now_limit_holds_across_two_api_instances_on_one_database(
    settings: Settings, free: Tenant, clock: FrozenClock
) -> None:
    # A second app on its own connections to the same database, as another worker or node.
    other_db = Database(settings.database_url)
    other_app = create_app(settings, clock, db=other_db, background=False)
    apps = [free.client.application, other_app]
    statuses: list[int] = []
    lock = threading.Lock()

    def send(app: Flask) -> None:
        client = client_with_certificate(app, free.certificate)
        for _ in range(3):
            status = client.post(free.url(f"{JOBS}/j1/run")).status_code
            with lock:
                statuses.append(status)

    threads = [threading.Thread(target=send, args=(apps[index % 2],)) for index in range(8)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        other_client = client_with_certificate(other_app, free.certificate)
        refused = other_client.post(free.url(f"{JOBS}/j1/run"))
    finally:
        other_db.dispose()
    assert sorted(statuses) == [202] * 10 + [429] * 14
    assert_too_many(refused, 3600)
    assert len(executions_of_j1(free)) == 10


def test_run_now_past_the_open_executions_bound_gets_429_until_one_closes(
    settings: Settings, clock: FrozenClock, db: Database
) -> None:
    app = create_app(with_plan(settings, "Standard", max_open_runs=3), clock, db=db,
                     background=False)
    tenant = tenant_with_collection(app, db, clock, "Standard")
    started = [run_now(tenant) for _ in range(3)]  # no engine runs: they stay pending
    assert [response.status_code for response in started] == [202] * 3
    assert_too_many(run_now(tenant), 30, "3 executions of the job j1 are open", "(3)")
    assert len(executions_of_j1(tenant)) == 3
    first = started[0]
    canceled = tenant.client.patch(first.headers["Location"], json={"status": "canceled"})
    assert canceled.status_code == 204
    assert run_now(tenant).status_code == 202
    assert len(executions_of_j1(tenant)) == 4


def test_inline_runs_past_the_burst_get_429_with_retry_after_and_nothing_stored(
    collection: Tenant, clock: FrozenClock
) -> None:
    assert [run_inline(collection).status_code for _ in range(10)] == [202] * 10
    assert_too_many(run_inline(collection), 60,
                    "inline definitions in the job collection jc1", "every 1 minute")
    assert len(collection.call("GET", INLINE).get_json()) == 10
    clock.advance(timedelta(minutes=1))
    assert run_inline(collection).status_code == 202


def test_inline_runs_past_the_open_bound_get_429_before_the_job_quota(
    settings: Settings, clock: FrozenClock, db: Database
) -> None:
    app = create_app(with_plan(settings, "Standard", max_open_runs=2), clock, db=db,
                     background=False)
    tenant = tenant_with_collection(app, db, clock, "Standard")
    assert [run_inline(tenant).status_code for _ in range(2)] == [202] * 2
    assert_too_many(run_inline(tenant), 30, "2 executions of inline definitions", "(2)")
    assert len(tenant.call("GET", INLINE).get_json()) == 2


def test_run_limits_are_read_from_the_plan_settings(
    home: dict[str, Any], settings: Settings, clock: FrozenClock, db: Database
) -> None:
    loaded = load_settings(home["home"], env={"SCHEDULER_PLANS_FREE_RUN_NOW_BURST": "2",
                                              "SCHEDULER_PLANS_FREE_MAX_OPEN_RUNS": "7"})
    assert (loaded.plans["Free"].run_now_burst, loaded.plans["Free"].max_open_runs) == (2, 7)
    assert (loaded.plans["Standard"].run_now_burst,
            loaded.plans["Standard"].max_open_runs) == (10, 100)
    app = create_app(replace(settings, plans=loaded.plans), clock, db=db, background=False)
    tenant = tenant_with_collection(app, db, clock, "Free")
    assert [run_now(tenant).status_code for _ in range(2)] == [202] * 2
    assert_too_many(run_now(tenant), 3600, "2 at once")
    with pytest.raises(SettingsError, match="run_now_burst must be at least 1"):
        load_settings(home["home"], env={"SCHEDULER_PLANS_FREE_RUN_NOW_BURST": "0"})
