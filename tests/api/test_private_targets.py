"""With private networks off, a target written as a private address is refused when the job
is made, not only when it fires; names are still checked when the call connects."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from flask import Flask

from scheduler.app import create_app
from scheduler.clock import FrozenClock
from scheduler.db.session import Database
from scheduler.settings import Settings
from tests.support import CLOUD_SERVICE_XML, JOBS, Tenant, collection_xml, new_tenant

COLLECTION = "/cloudservices/cs1/resources/scheduler/jobcollections/jc1"
EXECUTIONS = "/cloudservices/cs1/resources/scheduler/~/jobcollections/jc1/executions"


@pytest.fixture
def guarded(settings: Settings, clock: FrozenClock, db: Database) -> Tenant:
    """A tenant with a collection, on an API whose jobs may not call private networks."""
    closed = replace(settings, outbound=replace(settings.outbound,
                                                allow_private_networks=False))
    app: Flask = create_app(closed, clock, db=db, background=False)
    tenant = new_tenant(app, db, clock, "guarded")
    assert tenant.call("PUT", "/cloudservices/cs1", CLOUD_SERVICE_XML).status_code == 202
    assert tenant.call("PUT", COLLECTION, collection_xml()).status_code == 202
    return tenant


def job_calling(host: str) -> dict[str, Any]:
    """A job calling `host`, far in the future."""
    return {"startTime": "2030-01-01T00:00:00Z", "action": {"type": "http", "request": {
        "uri": f"http://{host}/latest/meta-data", "method": "GET"}}}


@pytest.mark.parametrize("host", [
    "127.0.0.1", "127.1", "0x7f.0.0.1", "0177.0.0.1", "2130706433", "0.0.0.0", "10.0.0.5",
    "172.16.0.1", "192.168.1.1", "169.254.169.254", "100.100.100.200", "[::1]",
    "[::ffff:127.0.0.1]", "[::ffff:a9fe:a9fe]", "[fe80::1]", "[fd00:ec2::254]", "[::]",
    "127.0.0.1:8080",
])
def test_a_private_address_is_refused_at_creation(guarded: Tenant, host: str) -> None:
    response = guarded.call("PUT", f"{JOBS}/j", job_calling(host))
    assert response.status_code == 400, response.data
    message = response.get_json()["error"]["message"]
    assert "action.request.uri" in message and "allow_private_networks" in message
    assert guarded.call("GET", JOBS).get_json() == []


@pytest.mark.parametrize("host", ["8.8.8.8", "example.com", "localhost", "1password.com",
                                  "[2606:4700::1111]"])
def test_public_addresses_and_names_are_accepted(guarded: Tenant, host: str) -> None:
    assert guarded.call("PUT", f"{JOBS}/j", job_calling(host)).status_code == 201


def test_error_actions_steps_and_inline_runs_are_checked_too(guarded: Tenant) -> None:
    job = job_calling("example.com")
    job["action"]["errorAction"] = job_calling("10.1.2.3")["action"]
    refused = guarded.call("PUT", f"{JOBS}/j", job)
    assert "action.errorAction.request.uri" in refused.get_json()["error"]["message"]
    job = job_calling("example.com")
    job["action"] = {"type": "sequence", "steps": [
        {"name": "a", "action": job_calling("example.com")["action"]},
        {"name": "b", "action": job_calling("[::1]")["action"]}]}
    refused = guarded.call("PUT", f"{JOBS}/j", job)
    assert "action.steps.1.action.request.uri" in refused.get_json()["error"]["message"]
    inline = guarded.call("POST", EXECUTIONS,
                          {"action": job_calling("169.254.169.254")["action"]})
    assert inline.status_code == 400
    assert guarded.call("GET", EXECUTIONS).get_json() == []
    assert guarded.call("GET", JOBS).get_json() == []


def test_the_setting_lets_private_targets_in(collection: Tenant) -> None:
    """The suite's own API allows private networks: its receivers are on loopback."""
    assert collection.call("PUT", f"{JOBS}/j", job_calling("127.0.0.1:9")).status_code == 201
