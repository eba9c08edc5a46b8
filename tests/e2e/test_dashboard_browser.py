"""The dashboard in a real Chromium against the real service: signing in both ways, finding
a failing job and its answer, running a job with a parameter and watching it finish without
reloading, cancelling, resuming, disabling with a note, DST marks, read-only mode, another
subscription's pages, and a form posted from another site. The overview, a job and an
execution are photographed for the README when `DASHBOARD_SCREENSHOTS` names a directory."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from playwright.sync_api import BrowserContext, Page, expect

from scheduler.security import pki
from tests.e2e.support import (
    AttackerSite,
    ServerProcess,
    as_new_subscription,
    auto_submitted_form,
    browser_certificate,
    create_collection,
)
from tests.engine.harness import Receiver
from tests.support import http_job

SERVER_ENV = {"SCHEDULER_OUTBOUND_ALLOW_PRIVATE_NETWORKS": "true"}
# Generous: CI shares its two cores; each wait ends as soon as its condition holds.
WAIT_MS = 60_000
NO_RETRY = {"retryType": "none"}
# A job that never comes due while a test runs.
FUTURE_JOB = http_job(startTime="2099-01-01T00:00:00Z")
# pytest-playwright's `new_context`: a context made with `browser_context_args` and more.
NewContext = Callable[..., BrowserContext]


@pytest.fixture(scope="module")
def dashboard_server(shared_server_factory: Callable[..., ServerProcess]) -> ServerProcess:
    """One server (API and engine) for the module; each test a subscription of its own."""
    return shared_server_factory(SERVER_ENV)


@pytest.fixture
def tenant(dashboard_server: ServerProcess, tmp_path: Path) -> ServerProcess:
    """The server as a subscription of this test's own sees it."""
    return as_new_subscription(dashboard_server, tmp_path)


def holding(new_context: NewContext, server: ServerProcess, directory: Path
            ) -> BrowserContext:
    """A browser context that presents the subscription's certificate to the service."""
    return new_context(client_certificates=browser_certificate(server, directory))


@pytest.fixture
def signed_in(new_context: NewContext, tenant: ServerProcess, tmp_path: Path) -> Page:
    """A page signed in to the dashboard with the presented certificate."""
    page = holding(new_context, tenant, tmp_path).new_page()
    page.goto(f"{tenant.base_url}/ui/{tenant.subscription_id}/")
    page.get_by_role("button", name=re.compile("Continue as")).click()
    expect(page.get_by_role("heading", name="Overview")).to_be_visible()
    return page


def job_page(server: ServerProcess, job_id: str) -> str:
    """The dashboard's page of a job of cs1/jc1."""
    return (f"{server.base_url}/ui/{server.subscription_id}/cloudservices/cs1/resources/"
            f"scheduler/~/jobcollections/jc1/jobs/{job_id}")


def screenshot(page: Page, name: str) -> None:
    """Photograph the page for the README, when asked to."""
    directory = os.environ.get("DASHBOARD_SCREENSHOTS")
    if directory:
        Path(directory).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(directory) / f"{name}.png"), full_page=True)


def test_a_one_time_link_signs_a_browser_without_a_certificate_in_once(
        context: BrowserContext, tenant: ServerProcess) -> None:
    thumbprint = pki.thumbprint(pki.load_certificate(
        Path(str(tenant.info["clientCert"])).read_bytes()))
    made = subprocess.run(
        [sys.executable, "-m", "scheduler.cli", "dashboard", "link", "--home",
         str(tenant.home), "--subscription", tenant.subscription_id, "--certificate",
         thumbprint, "--output", "json"],
        capture_output=True, text=True, env={**os.environ, **tenant.env}, check=True)
    url = re.search(r'"url": "([^"]+)"', made.stdout)
    assert url, made.stdout
    page = context.new_page()  # a browser without a certificate
    page.goto(url.group(1))
    page.get_by_role("button", name="Open the dashboard").click()
    expect(page.get_by_role("heading", name="Overview")).to_be_visible()
    again = context.new_page()
    again.goto(url.group(1))
    again.get_by_role("button", name="Open the dashboard").click()
    expect(again.get_by_text("works once")).to_be_visible()


def test_a_failing_job_is_found_from_the_overview_with_its_answer(
        signed_in: Page, tenant: ServerProcess, start_receiver: Callable[..., Receiver]
        ) -> None:
    receiver = start_receiver()
    receiver.answers["/broken"] = (500, {}, b"database is down")
    session, jobs = create_collection(tenant, "Standard")
    soon = datetime.now(UTC) + timedelta(seconds=2)
    job = receiver.job("/broken", startTime=f"{soon:%Y-%m-%dT%H:%M:%SZ}",
                       recurrence={"frequency": "hour", "interval": 1})
    job["action"]["retryPolicy"] = NO_RETRY
    assert session.put(f"{jobs}/nightly", json=job).status_code == 201
    assert session.put(f"{jobs}/healthy", json=receiver.job(
        "/ok", startTime="2099-01-01T00:00:00Z")).status_code == 201
    page = signed_in
    expect(page).to_have_title(re.compile(r"^\(1 failing\)"), timeout=WAIT_MS)
    screenshot(page, "overview")
    page.get_by_role("link", name="nightly").first.click()
    expect(page.locator("#state-words")).to_contain_text("failing")
    expect(page.locator("#state-words")).to_contain_text("HTTP 500")
    screenshot(page, "job")
    page.locator("table.runs a").first.click()
    expect(page.locator("#answer-status")).to_contain_text("HTTP 500")
    expect(page.locator("#answer-body")).to_contain_text("database is down")


def test_a_job_run_now_with_a_parameter_completes_before_the_eyes(
        signed_in: Page, tenant: ServerProcess, start_receiver: Callable[..., Receiver]
        ) -> None:
    receiver = start_receiver()
    session, jobs = create_collection(tenant, "Standard")
    assert session.put(f"{jobs}/greet", json=receiver.job(
        startTime="2099-01-01T00:00:00Z")).status_code == 201
    page = signed_in
    page.goto(job_page(tenant, "greet"))
    page.get_by_label("who").fill("dashboard")
    page.get_by_role("button", name="Run now").click()
    expect(page.get_by_role("heading", name=re.compile("Execution"))).to_be_visible()
    url = page.url
    # The page polls: the status changes without a reload.
    expect(page.locator("#execution-status")).to_have_text("completed", timeout=WAIT_MS)
    assert page.url == url
    assert any(request.body == b"hello dashboard" for request in receiver.requests)
    expect(page.locator(".timeline")).to_contain_text("leased")
    screenshot(page, "execution")


def test_a_running_execution_is_canceled_from_its_page(
        signed_in: Page, tenant: ServerProcess, start_receiver: Callable[..., Receiver]
        ) -> None:
    receiver = start_receiver()
    receiver.holds["/slow"] = threading.Event()
    session, jobs = create_collection(tenant, "Standard")
    assert session.put(f"{jobs}/slow", json=receiver.job(
        "/slow", startTime="2099-01-01T00:00:00Z")).status_code == 201
    page = signed_in
    page.goto(job_page(tenant, "slow"))
    page.get_by_role("button", name="Run now").click()
    expect(page.locator("#execution-status")).to_have_text("running", timeout=WAIT_MS)
    page.get_by_role("button", name="Cancel").click()
    expect(page.locator("#execution-status")).to_have_text("canceled", timeout=WAIT_MS)
    receiver.holds["/slow"].set()


def test_a_manual_step_is_resumed_from_the_execution_page(
        signed_in: Page, tenant: ServerProcess, start_receiver: Callable[..., Receiver]
        ) -> None:
    receiver = start_receiver()
    session, jobs = create_collection(tenant, "Standard")
    step = {"type": "http", "request": {"uri": receiver.url("/approved"), "method": "POST"}}
    job = {"startTime": "2099-01-01T00:00:00Z", "action": {"type": "sequence", "steps": [
        {"name": "approve", "manual": True, "action": step}]}}
    assert session.put(f"{jobs}/release", json=job).status_code == 201
    page = signed_in
    page.goto(job_page(tenant, "release"))
    page.get_by_role("button", name="Run now").click()
    expect(page.locator("#execution-status")).to_have_text("paused", timeout=WAIT_MS)
    page.get_by_role("button", name="Resume").click()
    expect(page.locator("#execution-status")).to_have_text("completed", timeout=WAIT_MS)
    assert [request.path for request in receiver.requests] == ["/approved"]


def test_a_job_disabled_with_a_note_shows_who_and_why(
        signed_in: Page, tenant: ServerProcess) -> None:
    session, jobs = create_collection(tenant, "Standard")
    assert session.put(f"{jobs}/report", json=FUTURE_JOB).status_code == 201
    page = signed_in
    page.goto(job_page(tenant, "report"))
    disable = page.get_by_role("form", name="Disable")
    disable.get_by_label("Note").fill("target is being migrated")
    disable.get_by_role("button", name="Disable").click()
    expect(page.locator("#state-note")).to_contain_text("target is being migrated")
    expect(page.locator("#state-note")).to_contain_text("tenant admin")
    document = session.get(f"{jobs}/report").json()
    assert document["state"] == "disabled"
    assert document["stateNote"] == "target is being migrated"


def test_a_new_york_job_shows_where_dst_moved_it_in_march_2027(
        signed_in: Page, tenant: ServerProcess) -> None:
    session, jobs = create_collection(tenant, "Standard")
    job = {"startTime": "2027-03-10T00:00:00Z",
           "action": {"type": "http", "request": {"uri": "https://example.com/",
                                                  "method": "GET"}},
           "recurrence": {"frequency": "day", "interval": 1, "timeZone": "America/New_York",
                          "schedule": {"hours": [2], "minutes": [30]}}}
    assert session.put(f"{jobs}/daily", json=job).status_code == 201
    page = signed_in
    page.goto(job_page(tenant, "daily"))
    marked = page.locator("table.upcoming tr.dst")
    expect(marked.first).to_contain_text("2027-03-14 03:30:00 UTC-04:00")
    expect(marked.first).to_contain_text("02:30 does not exist this day")
    expect(page.locator("table.upcoming")).to_contain_text("2027-03-13 02:30:00 UTC-05:00")
    # At a phone's width the page fits: wide tables scroll inside it.
    page.set_viewport_size({"width": 390, "height": 844})
    for path in (job_page(tenant, "daily"), f"{tenant.base_url}/ui/{tenant.subscription_id}/",
                 f"{tenant.base_url}/ui/{tenant.subscription_id}/jobs"):
        page.goto(path)
        assert page.evaluate("document.documentElement.scrollWidth") <= 390, path


def test_another_subscriptions_pages_refuse(
        signed_in: Page, tenant: ServerProcess, dashboard_server: ServerProcess,
        tmp_path: Path) -> None:
    (tmp_path / "other").mkdir()
    other = as_new_subscription(dashboard_server, tmp_path / "other", "other")
    create_collection(other, "Standard")
    answer = signed_in.goto(f"{other.base_url}/ui/{other.subscription_id}/")
    assert answer is not None and answer.status == 404
    answer = signed_in.goto(job_page(other, "anything"))
    assert answer is not None and answer.status == 404


def test_a_form_of_another_site_changes_nothing_through_the_dashboard(
        signed_in: Page, tenant: ServerProcess) -> None:
    session, jobs = create_collection(tenant, "Standard")
    assert session.put(f"{jobs}/kept", json=FUTURE_JOB).status_code == 201
    page = signed_in
    page.goto(job_page(tenant, "kept"))
    csrf = page.locator("input[name=csrf]").first.get_attribute("value") or ""
    attacker = AttackerSite()
    try:
        # Even a page that somehow knew the session's CSRF token is refused.
        attacker.pages["/disable"] = auto_submitted_form(
            job_page(tenant, "kept") + "/state",
            {"state": "disabled", "note": "forged", "csrf": csrf},
            "application/x-www-form-urlencoded")
        with page.expect_navigation(url=re.compile(re.escape(tenant.base_url))) as sent:
            page.goto(attacker.url("/disable"))
        answer = sent.value
        assert answer is not None and answer.status == 403, answer.status
    finally:
        attacker.close()
    assert session.get(f"{jobs}/kept").json()["state"] == "enabled"


def test_read_only_mode_shows_no_action_and_refuses_forms(
        new_context: NewContext, shared_server_factory: Callable[..., ServerProcess],
        tmp_path: Path) -> None:
    server = as_new_subscription(
        shared_server_factory({**SERVER_ENV, "SCHEDULER_UI_READ_ONLY": "true"}), tmp_path)
    session, jobs = create_collection(server, "Standard")
    assert session.put(f"{jobs}/quiet", json=FUTURE_JOB).status_code == 201
    page = holding(new_context, server, tmp_path).new_page()
    page.goto(job_page(server, "quiet"))
    page.get_by_role("button", name=re.compile("Continue as")).click()
    expect(page.get_by_role("heading", name=re.compile("quiet"))).to_be_visible()
    expect(page.get_by_text("read-only")).to_be_visible()
    assert page.get_by_role("button", name="Run now").count() == 0
    assert page.get_by_role("button", name="Disable").count() == 0
    refused = page.evaluate(
        """async (url) => {
             const form = new URLSearchParams({state: "disabled", csrf: "x"});
             const r = await fetch(url, {method: "POST", body: form});
             return r.status;
           }""", job_page(server, "quiet") + "/state")
    assert refused == 403
    assert session.get(f"{jobs}/quiet").json()["state"] == "enabled"
