"""A PostgreSQL outage under two serving nodes: requests get 503 and `/healthz` stays up
while it lasts; afterwards every operation finishes, every call is recorded once and none
is made twice. The outage is real: the test's own database refuses connections and its
sessions are ended, then it lets them in again."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests
from sqlalchemy import create_engine, text

from tests.e2e.support import ServerProcess, create_collection, slow_responder, wait_for
from tests.engine.harness import Receiver
from tests.support import CLOUD_SERVICE_XML, OutageDatabase, collection_xml, outage_database

OUTAGE_SECONDS = 8.0  # well under the engine's lease: nothing may be taken over


@pytest.fixture
def outage() -> Iterator[OutageDatabase]:
    """A database of the test's own, which it cuts off and lets in again."""
    with outage_database() as database:
        yield database


def rows(url: str, sql: str) -> list[Any]:
    """Rows of a query on the test's database."""
    engine = create_engine(url)
    with engine.connect() as conn:
        found = list(conn.execute(text(sql)).all())
    engine.dispose()
    return found


def operation_done(session: requests.Session, server: ServerProcess, response: Any) -> bool:
    """Whether the asynchronous operation a 202 answer started has succeeded."""
    request_id = response.headers["x-ms-request-id"]
    status = session.get(f"{server.base_url}/{server.subscription_id}/operations/{request_id}")
    return status.status_code == 200 and b"Succeeded" in status.content


def test_two_nodes_ride_out_a_database_outage(
    server_factory: Any, receiver: Receiver, outage: OutageDatabase
) -> None:
    url = outage.url
    receiver.responder = slow_responder(2.0)  # answers come back while the database is away
    env = {"SCHEDULER_DATABASE_URL": url, "SCHEDULER_OUTBOUND_ALLOW_PRIVATE_NETWORKS": "true",
           "SCHEDULER_PLANS_STANDARD_MAX_RECURRENCE": "PT1S",
           "SCHEDULER_ENGINE_MAX_SLEEP_SECONDS": "0.5",
           # Both nodes live throughout: on a busy machine one may take seconds to beat again
           # once the database is back, and must not be taken for dead meanwhile (the other
           # would then rightly call again what it held).
           "SCHEDULER_ENGINE_DEAD_AFTER_SECONDS": "30"}
    first: ServerProcess = server_factory(env=env)
    second: ServerProcess = server_factory(home=first.home, env=env)
    session, jobs = create_collection(first, "Standard")
    start = (datetime.now(UTC) + timedelta(seconds=2)).replace(microsecond=0)
    ticking = {"startTime": start.isoformat(), "recurrence": {"frequency": "second"},
               "action": {"type": "http", "request": {"uri": receiver.url("/tick"),
                                                      "method": "POST"}}}
    assert session.put(f"{jobs}/tick", json=ticking).status_code == 201
    later = {"startTime": "2099-01-01T00:00:00Z", "action": {"type": "http", "request": {
        "uri": receiver.url("/now"), "method": "POST"}, "retryPolicy": {"retryType": "none"}}}
    assert session.put(f"{jobs}/later", json=later).status_code == 201
    started = [server.session().post(f"{jobs.replace(first.base_url, server.base_url)}"
                                     "/later/run")
               for server in (first, second) for _ in range(3)]
    assert all(response.status_code == 202 for response in started)
    assert wait_for(lambda: len(receiver.requests) >= 4, 30)

    outage.cut_off()
    began = time.monotonic()
    during = []
    while time.monotonic() - began < OUTAGE_SECONDS:
        for server in (first, second):
            plain = requests.Session()
            plain.trust_env = False
            health = plain.get(f"{server.base_url}/healthz", verify=str(server.info["caCert"]),
                               timeout=10)
            assert health.status_code == 200, "liveness does not depend on the database"
            ready = plain.get(f"{server.base_url}/readyz", verify=str(server.info["caCert"]),
                              timeout=10)
            assert ready.status_code == 503 and ready.json()["database"] != "ok"
            own_jobs = jobs.replace(first.base_url, server.base_url)
            during.append(server.session().get(own_jobs, timeout=15))
            # Job writes run their statements on the raw cursor: its errors are the driver's.
            during.append(server.session().put(f"{own_jobs}/during", json=later, timeout=15))
        time.sleep(0.5)
    outage.let_in()

    assert during and all(r.status_code == 503 for r in during), [r.status_code for r in during]
    assert all(r.headers.get("Retry-After") and b"ServerBusy" in r.content for r in during)
    # Background work went on: operations started after the outage finish on both nodes.
    for index, server in enumerate((first, second)):
        base = f"{server.base_url}/{server.subscription_id}/cloudservices/after{index}"
        made = server.session().put(base, data=CLOUD_SERVICE_XML)
        assert made.status_code == 202, made.text
        collection = server.session().put(f"{base}/resources/scheduler/jobcollections/jc",
                                          data=collection_xml("Standard"))
        assert collection.status_code == 202, collection.text
        assert wait_for(lambda s=server, c=collection: operation_done(s.session(), s, c), 60)
    # Every run-now ends recorded once, its call made once.
    run_ids = [response.json()["id"] for response in started]
    assert wait_for(lambda: {status for (status,) in rows(
        url, "SELECT status FROM executions WHERE trigger = 'manual'")} == {"completed"}, 60)
    session.patch(jobs, json={"state": "disabled"})
    time.sleep(3)  # calls in flight come back; a duplicate would show up by now
    tags = Counter(request.headers["x-ms-execution-tag"] for request in receiver.requests)
    assert max(tags.values()) == 1, [tag for tag, count in tags.items() if count > 1]
    assert set(run_ids) <= set(tags)
    attempts = rows(url, "SELECT attempts FROM executions WHERE trigger = 'manual'")
    assert sorted(attempts) == [(1,)] * len(run_ids), "a run was attempted again"
    [(entries,)] = rows(url, "SELECT count(*) FROM job_history h JOIN jobs j "
                             "ON j.id = h.job_pk WHERE j.job_id = 'later'")
    assert entries == len(run_ids), "each run's attempt is in the history once"
    assert rows(url, "SELECT count(*) FROM executions WHERE status = 'running'") == [(0,)]
    # An operation cut short by the outage runs again once its lease lapses, on either node.
    assert wait_for(lambda: rows(
        url, "SELECT count(*) FROM operations WHERE status = 'InProgress'") == [(0,)], 60)
