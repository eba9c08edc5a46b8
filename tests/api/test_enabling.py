"""Enabling jobs, one at a time or all of a collection's at once, means the same: nothing
missed while disabled is replayed, and each job needs the values its placeholders name."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from scheduler.clock import FrozenClock
from tests.support import JOBS, Tenant


def minutely(uri: str = "https://example.com/tick") -> dict[str, Any]:
    """A job firing every minute from 12:01 (the fake clock starts at 12:00)."""
    return {"startTime": "2026-03-01T12:01:00Z", "recurrence": {"frequency": "minute"},
            "action": {"type": "http", "request": {"uri": uri, "method": "POST"}}}


@pytest.mark.parametrize("all_at_once", [False, True])
def test_a_job_enabled_again_fires_next_from_then(
    collection: Tenant, clock: FrozenClock, all_at_once: bool
) -> None:
    assert collection.call("PUT", f"{JOBS}/tick", minutely()).status_code == 201
    assert collection.call("PATCH", f"{JOBS}/tick", {"state": "disabled"}).status_code == 200
    clock.advance(timedelta(minutes=30, seconds=20))  # 12:30:20
    if all_at_once:
        enabled = collection.call("PATCH", JOBS, {"state": "enabled"})
    else:
        enabled = collection.call("PATCH", f"{JOBS}/tick", {"state": "enabled"})
    assert enabled.status_code == 200, enabled.data
    job = collection.call("GET", f"{JOBS}/tick").get_json()
    assert job["state"] == "enabled"
    assert job["status"]["nextExecutionTime"] == "2026-03-01T12:31:00Z"


def test_enabling_all_needs_every_job_s_values(collection: Tenant) -> None:
    waiting = minutely("https://example.com/{{parameters.region}}")
    waiting["state"] = "disabled"
    assert collection.call("PUT", f"{JOBS}/ready", minutely()).status_code == 201
    assert collection.call("PUT", f"{JOBS}/waiting", waiting).status_code == 201
    assert collection.call("PATCH", JOBS, {"state": "disabled"}).status_code == 200
    refused = collection.call("PATCH", JOBS, {"state": "enabled"})
    assert refused.status_code == 400
    message = refused.get_json()["error"]["message"]
    assert "waiting" in message and "{{parameters.region}}" in message
    states = {job["id"]: job["state"] for job in collection.call("GET", JOBS).get_json()}
    assert states == {"ready": "disabled", "waiting": "disabled"}
