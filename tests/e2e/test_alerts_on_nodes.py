"""Alerts with two engine processes on one PostgreSQL database, one of them killed while
jobs fail every second: each alert is made once and delivered once, by whichever node is
alive, to a real webhook."""

from __future__ import annotations

import json
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

from tests.e2e.support import ServerProcess, create_collection, schema_rows, wait_for
from tests.engine.harness import Answer, Received, Receiver

JOBS = 4


def _env(url: str) -> dict[str, str]:
    return {"SCHEDULER_DATABASE_URL": url, "SCHEDULER_OUTBOUND_ALLOW_PRIVATE_NETWORKS": "true",
            "SCHEDULER_ENGINE_MAX_SLEEP_SECONDS": "0.2",
            "SCHEDULER_PLANS_P20PREMIUM_MAX_RECURRENCE": "PT1S"}


def _alert_rows(schema: str) -> list[tuple[str, str, str, str]]:
    """Every alert made: id, job, event and status."""
    return [(str(a), str(b), str(c), str(d)) for a, b, c, d in schema_rows(
        schema, "SELECT a.id, j.job_id, a.event, a.status FROM {schema}.alerts a "
                "JOIN {schema}.jobs j ON j.id = a.job_pk")]


def _alerts_received(hooks: list[Received]) -> list[dict[str, Any]]:
    return [json.loads(request.body) for request in hooks]


def test_each_alert_is_made_and_delivered_once_across_a_killed_engine(
    server_factory: Any, receiver: Receiver, postgres_schema: tuple[str, str]
) -> None:
    schema, url = postgres_schema
    env = _env(url)
    hooks: list[Received] = []

    def respond(request: Received) -> Answer:
        if request.path == "/alerts":
            hooks.append(request)
            return 200, {}, b"ok"
        time.sleep(0.2)  # the job's target fails, a moment later
        return 500, {}, b"broken"

    receiver.responder = respond
    api: ServerProcess = server_factory(env=env, role="api")
    session, jobs = create_collection(api, "P20Premium")
    collection = jobs.rsplit("/", 1)[0]
    assert session.put(f"{collection}/notificationChannels/hook", json={
        "type": "webhook", "url": receiver.url("/alerts")}).status_code == 201
    engines = [server_factory(home=api.home, env=env, role="engine") for _ in range(2)]
    start = (datetime.now(UTC) + timedelta(seconds=3)).replace(microsecond=0)
    for index in range(JOBS):
        # Every failure alerts: a streak alerts again each second it lasts.
        job = {"startTime": start.isoformat(), "recurrence": {"frequency": "second"},
               "action": {"type": "http", "request": {"uri": receiver.url(f"/job{index}"),
                                                      "method": "POST"},
                          "retryPolicy": {"retryType": "none"}},
               "alerts": {"on": ["failed"], "realert": "PT1S", "channels": ["hook"]}}
        assert session.put(f"{jobs}/job{index}", json=job).status_code == 201
    assert wait_for(lambda: len(hooks) >= 8, 60), "no alerts arrived"
    engines[0].kill()
    assert wait_for(lambda: len(hooks) >= 24, 90), "alerts stopped after the kill"
    for index in range(JOBS):
        assert session.patch(f"{jobs}/job{index}", json={"state": "disabled"}
                             ).status_code == 200
    assert wait_for(lambda: _alert_rows(schema) and all(
        status != "pending" for _, _, _, status in _alert_rows(schema)), 90), \
        "some alert was never delivered"
    rows = _alert_rows(schema)
    received = _alerts_received(hooks)
    repeats = {alert_id: count for alert_id, count in
               Counter(alert["id"] for alert in received).items() if count > 1}
    assert not repeats, f"alerts delivered twice: {repeats}"
    assert {alert["id"] for alert in received} == {alert_id for alert_id, *_ in rows}
    assert all(status == "sent" for *_, status in rows)
    # One alert per failed execution at most: never two of one occurrence.
    per_execution = Counter(alert["executionId"] for alert in received)
    assert max(per_execution.values()) == 1
    assert {alert["job"] for alert in received} == {f"job{index}" for index in range(JOBS)}
