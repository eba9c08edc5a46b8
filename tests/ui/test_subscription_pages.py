"""The subscription's pages beyond jobs: the audit of a job and of every collection, the
engine's nodes with what they hold and took over, collections with their quota and state,
and certificates."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import timedelta

from flask.testing import FlaskClient

from scheduler.clock import FrozenClock
from tests.engine.harness import NodeDriver, Receiver
from tests.support import JOBS, Tenant, collection_xml, http_job
from tests.ui.markup import HTTPS, collection_ui, page, ui

CsrfOf = Callable[[FlaskClient, str], str]
COLLECTIONS = "/cloudservices/cs1/resources/scheduler/jobcollections"
JC2_JOBS = "/cloudservices/cs1/resources/scheduler/~/jobcollections/jc2/jobs"


def test_a_job_page_lists_its_changes_and_the_audit_page_those_of_every_collection(
        signed_in: FlaskClient, collection: Tenant, csrf_of: CsrfOf) -> None:
    sub = collection.subscription_id
    assert collection.call("PUT", f"{COLLECTIONS}/jc2", collection_xml()).status_code == 202
    assert collection.call("PUT", f"{JC2_JOBS}/elsewhere", http_job()).status_code == 201
    job_page = collection_ui(sub, "/jobs/j1")
    response = signed_in.post(job_page + "/state", base_url=HTTPS, data={
        "csrf": csrf_of(signed_in, job_page), "state": "disabled", "note": "vendor window"})
    assert response.status_code == 303

    changes = page(signed_in, job_page).section("audit").find_all("li")
    assert [change.text for change in changes] == [
        "2026-03-01 12:00:00 UTC+00:00 · first · job.state · state: enabled → disabled "
        "— “vendor window”",
        "2026-03-01 12:00:00 UTC+00:00 · first · job.create · state: enabled"]
    assert [change.one("strong").text for change in changes] == ["first", "first"]
    audit = page(signed_in, ui(sub, "/audit")).one("table").rows()
    assert [row[1:] for row in audit] == [
        ["first", "job.state", "j1 cs1/jc1", "state: enabled → disabled", "vendor window"],
        ["first", "job.create", "elsewhere cs1/jc2", "state: enabled", ""],
        ["first", "collection.create", "cs1/jc2", "plan: Standard; state: Started", ""],
        ["first", "job.create", "j1 cs1/jc1", "state: enabled", ""],
        ["first", "collection.create", "cs1/jc1", "plan: Standard; state: Started", ""],
        ["first", "cloudservice.create", "cs1/", "region: West Europe", ""]]


def test_the_engine_page_shows_what_a_live_node_holds_and_took_over(
        signed_in: FlaskClient, collection: Tenant, receiver: Receiver, driver: NodeDriver,
        other: NodeDriver, clock: FrozenClock) -> None:
    assert collection.call("PUT", f"{JOBS}/soon", receiver.job("/hook")).status_code == 201
    clock.advance(timedelta(seconds=8))
    driver.run_pass()  # 12:00:08: node-a readies the call due at 12:00:10, then dies
    clock.advance(timedelta(seconds=1))
    other.run_pass()  # 12:00:09: node-b starts
    clock.advance(timedelta(seconds=5))  # 12:00:14: node-a's heartbeat is 6 s old
    assert collection.call("PUT", f"{JOBS}/later", receiver.job(
        "/later", startTime="2026-03-01T12:00:16Z")).status_code == 201
    assert other.run_timers() == 1  # node-b's heartbeat takes the call over
    other.settle()
    receiver.holds["/hook"] = answered = threading.Event()
    try:
        other.run_pass()  # sends the call it took over, and readies `later`'s
        assert other.held_calls() == (1, 1)
        clock.advance(timedelta(seconds=1))  # 12:00:15
        engine = page(signed_in, ui(collection.subscription_id, "/engine"))
    finally:
        answered.set()
    other.settle()
    rows = engine.one("table").rows()
    assert rows == [["node-b", "ok", "1.0 s ago", "2026-03-01 12:00:09 UTC+00:00", "1", "1",
                     "2", "1"]]
    headings = [cell.text for cell in engine.one("thead").find_all("th")]
    assert headings == ["Node", "Alive", "Last heartbeat", "Started", "Calls in flight",
                        "Readied", "Leases held", "Take-overs (24 h)"]


def test_the_collections_page_shows_plan_quota_and_a_suspended_state(
        signed_in: FlaskClient, collection: Tenant) -> None:
    quota = "<Quota><MaxJobCount>5</MaxJobCount></Quota>"
    assert collection.call("PUT", f"{COLLECTIONS}/jc2", collection_xml(
        "P10Premium", quota)).status_code == 202
    for job_id in ("a", "b"):
        assert collection.call("PUT", f"{JC2_JOBS}/{job_id}", http_job()).status_code == 201
    assert collection.call("PUT", f"{COLLECTIONS}/jc2", collection_xml(
        "P10Premium", quota, state="Suspended")).status_code == 202
    rows = page(signed_in, ui(collection.subscription_id, "/collections")).one("table").rows()
    assert rows == [
        ["jc1", "cs1", "West Europe", "Standard", "1 of 50", "Started", "—"],
        ["jc2", "cs1", "West Europe", "P10Premium", "2 of 5", "Suspended", "—"]]


def test_the_certificates_page_shows_name_thumbprint_and_expiry(
        signed_in: FlaskClient, collection: Tenant) -> None:
    rows = page(signed_in, ui(collection.subscription_id, "/certificates")).one("table").rows()
    certificate = collection.certificate.certificate
    expiry = certificate.not_valid_after_utc
    assert expiry.isoformat() == "2028-06-03T12:00:00+00:00"
    assert rows == [["first", collection.certificate.thumbprint,
                     "2028-06-03 12:00:00 UTC+00:00 (in 825 d)",
                     "2026-03-01 12:00:00 UTC+00:00"]]
