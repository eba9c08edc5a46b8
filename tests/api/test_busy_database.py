"""A SQLite write lock held by another process past the request's wait: writes answer 503
ServerBusy with Retry-After, reads go on, and writes work again once the lock is free."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from scheduler.app import create_app
from scheduler.clock import FrozenClock
from scheduler.db.schema import upgrade_schema
from scheduler.db.session import Database
from scheduler.settings import load_settings
from tests.support import CLOUD_SERVICE_XML, JOBS, Tenant, collection_xml, new_tenant

# Holds the write lock until the test closes its standard input (or kills it).
HOLD_LOCK = """
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("BEGIN IMMEDIATE")
print("locked", flush=True)
sys.stdin.read()
"""


@pytest.fixture
def sqlite_tenant(home: dict[str, Any], clock: FrozenClock) -> Iterator[tuple[Tenant, Path]]:
    """A tenant with a collection, on the API as `serve` builds it over the home's SQLite
    file, waiting one second for a connection or the write lock."""
    settings = load_settings(home["home"], env={
        "SCHEDULER_DATABASE_POOL_TIMEOUT_SECONDS": "1",
        "SCHEDULER_OUTBOUND_ALLOW_PRIVATE_NETWORKS": "true"})
    setup = Database(settings.database_url)
    upgrade_schema(setup)
    app = create_app(settings, clock, background=False)
    tenant = new_tenant(app, setup, clock, "busy")
    assert tenant.call("PUT", "/cloudservices/cs1", CLOUD_SERVICE_XML).status_code == 202
    assert tenant.call("PUT", "/cloudservices/cs1/resources/scheduler/jobcollections/jc1",
                       collection_xml()).status_code == 202
    yield tenant, Path(settings.database_url.removeprefix("sqlite:///"))
    setup.dispose()


def job() -> dict[str, Any]:
    """A job far in the future."""
    return {"startTime": "2030-01-01T00:00:00Z", "action": {"type": "http", "request": {
        "uri": "https://example.com/hook", "method": "POST"}}}


def test_a_write_lock_held_elsewhere_gets_503_and_reads_go_on(
    sqlite_tenant: tuple[Tenant, Path]
) -> None:
    tenant, path = sqlite_tenant
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(path)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        began = time.monotonic()
        refused = tenant.call("PUT", f"{JOBS}/j", job())
        waited = time.monotonic() - began
        assert refused.status_code == 503, refused.data
        assert refused.headers["Retry-After"] and b"ServerBusy" in refused.data
        assert waited < 30, "the request waited for the lock no longer than it should"
        assert tenant.call("GET", JOBS).status_code == 200
    finally:
        holder.kill()
        holder.wait()
    assert tenant.call("GET", JOBS).get_json() == []
    assert tenant.call("PUT", f"{JOBS}/j", job()).status_code == 201


def test_a_resource_manager_write_under_a_held_lock_gets_503_server_busy_as_json(
    sqlite_tenant: tuple[Tenant, Path]
) -> None:
    tenant, path = sqlite_tenant
    url = (f"/subscriptions/{tenant.subscription_id}/resourceGroups/cs1/providers/"
           "Microsoft.Scheduler/jobCollections/jc1/jobs/j?api-version=2016-03-01")
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(path)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        refused = tenant.client.put(url, json={"properties": job()})
        assert refused.status_code == 503, refused.data
        assert refused.headers["Retry-After"]
        assert refused.mimetype == "application/json"
        assert refused.get_json()["error"]["code"] == "ServerBusy"
    finally:
        holder.kill()
        holder.wait()
    assert tenant.client.put(url, json={"properties": job()}).status_code == 201
