"""The dashboard in a real Chromium against the real service: signing in both ways, finding
a failing job and its answer, running a job with a parameter and watching it finish without
reloading, cancelling, resuming, disabling with a note, DST marks, a job's alert and a
channel's test message, read-only mode, another subscription's pages, forms posted from
another site (the dashboard's and the sign-in ones), every page at a phone's width, polling
while shown and while hidden, and times in the browser's zone. The overview, a job and an
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
    wait_for,
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


# The innermost elements whose content spills out of them sideways: what widens a page.
BEYOND_THE_EDGE = """(() => {
  const spills = (e) => e.scrollWidth > e.clientWidth + 1 &&
                        getComputedStyle(e).overflowX === "visible";
  return [...document.body.querySelectorAll("*")]
    .filter((e) => spills(e) && ![...e.querySelectorAll("*")].some(spills))
    .map((e) => e.tagName + (e.id ? "#" + e.id : "") + "." + e.className);
})()"""


def test_every_page_fits_a_phones_width(
        signed_in: Page, tenant: ServerProcess, start_receiver: Callable[..., Receiver]
        ) -> None:
    receiver = start_receiver()
    # An answer of one long word, as JSON and tokens are, must wrap rather than widen a page.
    receiver.answers["/broken"] = (500, {}, b"x" * 400)
    session, jobs = create_collection(tenant, "Standard")
    assert session.put(jobs.rsplit("/", 1)[0] + "/notificationChannels/ops", json={
        "type": "webhook", "url": receiver.url("/alerts/" + "y" * 300)}).status_code == 201
    job = receiver.job("/broken", startTime="2099-01-01T00:00:00Z",
                       recurrence={"frequency": "day", "interval": 1,
                                   "timeZone": "America/New_York"},
                       alerts={"on": ["failed"], "channels": ["ops"]})
    job["action"]["retryPolicy"] = NO_RETRY
    assert session.put(f"{jobs}/nightly-warehouse-export", json=job).status_code == 201
    page = signed_in
    page.goto(job_page(tenant, "nightly-warehouse-export"))
    page.get_by_role("button", name="Run now").click()
    expect(page.locator("#execution-status")).to_have_text("failed", timeout=WAIT_MS)
    execution = page.url
    assert session.patch(f"{jobs}/nightly-warehouse-export", json={
        "state": "disabled", "stateNote": "the warehouse moves to another region tonight"
        }).status_code == 200
    dashboard = f"{tenant.base_url}/ui/{tenant.subscription_id}"
    collection = dashboard + "/cloudservices/cs1/resources/scheduler/~/jobcollections/jc1"
    page.set_viewport_size({"width": 390, "height": 844})
    for path in (f"{dashboard}/", f"{dashboard}/jobs", f"{collection}/jobs",
                 job_page(tenant, "nightly-warehouse-export"), execution, f"{dashboard}/audit",
                 f"{collection}/audit", f"{collection}/alerts", f"{dashboard}/engine",
                 f"{dashboard}/collections",
                 f"{dashboard}/certificates"):
        answer = page.goto(path)
        assert answer is not None and answer.status == 200, path
        # Wide tables scroll inside themselves; the page itself never scrolls sideways.
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 390, (path, width, page.evaluate(BEYOND_THE_EDGE))


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


# Counts, in the page, the script's fetches of the page itself (its polls) and the refreshes
# that end them: a refresh replaces the footer's #updated, and the script sets its next
# poll's timer in the same turn.
COUNT_POLLS = """
window.polls = 0;
window.refreshed = 0;
const sendFetch = window.fetch;
window.fetch = function (resource, options) {
  if (String(resource) === location.href) window.polls += 1;
  return sendFetch.call(this, resource, options);
};
document.addEventListener("DOMContentLoaded", () => {
  new MutationObserver((changes) => {
    for (const change of changes) {
      for (const node of change.addedNodes) if (node.id === "updated") window.refreshed += 1;
    }
  }).observe(document.body, {childList: true, subtree: true});
});
"""
SHOW_AS = """(hidden) => {
  Object.defineProperty(document, "hidden", {configurable: true, get: () => hidden});
  Object.defineProperty(document, "visibilityState", {configurable: true,
                                                      get: () => hidden ? "hidden" : "visible"});
  document.dispatchEvent(new Event("visibilitychange"));
}"""


def polls(page: Page) -> int:
    """How many times the page's script has polled the page so far."""
    count: int = page.evaluate("window.polls")
    return count


def settled(page: Page) -> None:
    """Wait until every poll so far has refreshed the page (and set the next one's timer)."""
    # Polled from here: the page's policy lets Playwright's own waiting evaluate nothing.
    assert wait_for(lambda: page.evaluate("window.refreshed === window.polls"),
                    WAIT_MS / 1000), page.evaluate("[window.polls, window.refreshed]")


def next_poll_after(page: Page, milliseconds: int) -> None:
    """On the page's stopped clock, the next poll comes exactly `milliseconds` from now."""
    before = polls(page)
    page.clock.run_for(milliseconds - 1)
    assert polls(page) == before, f"polled before {milliseconds} ms"
    page.clock.run_for(1)
    assert polls(page) == before + 1, f"no poll at {milliseconds} ms"
    settled(page)


def test_a_page_polls_every_few_seconds_while_shown_and_every_minute_while_hidden(
        signed_in: Page, tenant: ServerProcess) -> None:
    page = signed_in
    # The page's clock is the test's: its timers fire when the test moves it, never by
    # waiting; the polls it makes are real requests to the service.
    page.add_init_script(COUNT_POLLS)
    page.clock.install()
    page.goto(f"{tenant.base_url}/ui/{tenant.subscription_id}/")
    shown = int(page.locator("body").get_attribute("data-poll-visible-ms") or 0)
    hidden = int(page.locator("body").get_attribute("data-poll-hidden-ms") or 0)
    assert (shown, hidden) == (3_000, 60_000)
    # Stop the clock a minute ahead: the first poll's timer fires on the way.
    page.clock.pause_at(datetime.fromtimestamp(page.evaluate("Date.now()") / 1000 + 60, UTC))
    settled(page)
    assert polls(page) >= 1
    for _ in range(3):
        next_poll_after(page, shown)
    page.evaluate(SHOW_AS, True)
    next_poll_after(page, hidden)
    next_poll_after(page, hidden)
    # Shown again, the page is refreshed at once, then every few seconds again.
    before = polls(page)
    page.evaluate(SHOW_AS, False)
    assert polls(page) == before + 1
    settled(page)
    next_poll_after(page, shown)


def test_the_next_runs_are_shown_in_the_browsers_zone(
        new_context: NewContext, tenant: ServerProcess, tmp_path: Path) -> None:
    session, jobs = create_collection(tenant, "Standard")
    job = {**FUTURE_JOB, "recurrence": {"frequency": "day", "interval": 1}}
    assert session.put(f"{jobs}/midnight", json=job).status_code == 201
    context = new_context(client_certificates=browser_certificate(tenant, tmp_path),
                          timezone_id="Asia/Kolkata")
    page = context.new_page()
    page.goto(job_page(tenant, "midnight"))
    page.get_by_role("button", name=re.compile("Continue as")).click()
    first = page.locator("table.upcoming tbody tr").first
    expect(first.locator("td").nth(1)).to_have_text("2099-01-01 00:00:00 UTC+00:00")
    # Chromium's zone data still names the zone by its older name.
    expect(first.locator("td").nth(2)).to_have_text(re.compile(
        r"^2099-01-01 05:30:00 UTC\+05:30 \(Asia/(Kolkata|Calcutta)\)$"))


def test_a_sign_in_form_of_another_site_opens_no_session(
        new_context: NewContext, tenant: ServerProcess, tmp_path: Path) -> None:
    made = tenant.session().post(
        f"{tenant.base_url}/{tenant.subscription_id}/dashboard/links")
    assert made.status_code == 201, made.text
    link = made.json()["url"]
    context = holding(new_context, tenant, tmp_path)
    page = context.new_page()
    page.goto(f"{tenant.base_url}/ui/sign-in")
    # Even forms that somehow knew the sign-in page's token are refused.
    csrf = page.locator("input[name=csrf]").first.get_attribute("value") or ""
    attacker = AttackerSite()
    try:
        attacker.pages["/certificate"] = auto_submitted_form(
            f"{tenant.base_url}/ui/sign-in/certificate",
            {"subscription": tenant.subscription_id, "csrf": csrf},
            "application/x-www-form-urlencoded")
        attacker.pages["/link"] = auto_submitted_form(
            link, {"csrf": csrf}, "application/x-www-form-urlencoded")
        for path in ("/certificate", "/link"):
            with page.expect_navigation(url=re.compile("/ui/sign-in/")) as sent:
                page.goto(attacker.url(path))
            answer = sent.value
            assert answer is not None and answer.status == 403, (path, answer.status)
    finally:
        attacker.close()
    assert [cookie for cookie in context.cookies()
            if cookie["name"] == "__Host-scheduler-ui"] == []
    # The link was not used up: it opens the dashboard from its own page.
    page.goto(link)
    page.get_by_role("button", name="Open the dashboard").click()
    expect(page.get_by_role("heading", name="Overview")).to_be_visible()


def test_a_failed_job_s_alert_and_a_channel_s_test_message_are_seen_in_the_browser(
        new_context: NewContext, tenant: ServerProcess, tmp_path: Path,
        start_receiver: Callable[..., Receiver]) -> None:
    receiver = start_receiver()
    receiver.answers["/broken"] = (500, {}, b"database is down")
    session, jobs = create_collection(tenant, "Standard")
    collection = jobs.rsplit("/", 1)[0]
    assert session.put(f"{collection}/notificationChannels/ops", json={
        "type": "webhook", "url": receiver.url("/alerts")}).status_code == 201
    soon = datetime.now(UTC) + timedelta(seconds=2)
    job = receiver.job("/broken", startTime=f"{soon:%Y-%m-%dT%H:%M:%SZ}",
                       recurrence={"frequency": "hour", "interval": 1},
                       alerts={"on": ["failed"], "channels": ["ops"]})
    job["action"]["retryPolicy"] = NO_RETRY
    assert session.put(f"{jobs}/nightly", json=job).status_code == 201
    context = new_context(client_certificates=browser_certificate(tenant, tmp_path),
                          timezone_id="Asia/Kolkata")
    page = context.new_page()
    page.goto(job_page(tenant, "nightly"))
    page.get_by_role("button", name=re.compile("Continue as")).click()
    expect(page.locator("#alert-rules")).to_contain_text("its own: on failed to ops")
    row = page.locator("table.alerts tbody tr").first
    # The page polls itself: the alert appears, delivered, without a reload.
    expect(row).to_contain_text("delivered to ops", timeout=WAIT_MS)
    expect(row.locator("td").first).to_have_text(re.compile(
        r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC\+05:30 \(Asia/(Kolkata|Calcutta)\)$"))
    page.get_by_role("link", name=re.compile("Channels and alerts")).click()
    expect(page.get_by_role("heading", name="Alerts and channels of cs1 / jc1")
           ).to_be_visible()
    expect(page.locator("table.alerts tbody tr").first).to_contain_text("nightly")
    page.get_by_role("button", name="Send a test message to ops").click()
    expect(page.locator("#test-notice")).to_have_text(re.compile(
        r"^The test message to ops, sent (now|[\d.]+ s ago), was delivered\.$"))
    tests = [request for request in receiver.requests
             if request.path == "/alerts" and b'"type":"test"' in request.body]
    assert len(tests) == 1
