"""A page of another site, open in a real Chromium that holds a registered management
certificate, cannot make the service change anything: not with a form (which a browser sends
across sites without asking, with the certificate), nor with a script's request."""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from playwright.sync_api import BrowserContext

from tests.e2e.support import (
    AttackerSite,
    ServerProcess,
    auto_submitted_form,
    browser_certificate,
    create_collection,
)

# pytest-playwright's `new_context`: a context made with `browser_context_args` and more.
NewContext = Callable[..., BrowserContext]
JOB = {"startTime": "2030-01-01T00:00:00Z",
       "action": {"type": "http", "request": {"uri": "http://example.com/", "method": "GET"}}}


@pytest.fixture
def attacker() -> Iterator[AttackerSite]:
    """A second local origin."""
    site = AttackerSite()
    yield site
    site.close()


@pytest.fixture
def holder(new_context: NewContext, shared_server: ServerProcess, tmp_path: Path
           ) -> BrowserContext:
    """A browser that holds the admin certificate for the service, as a person who
    imported it would."""
    return new_context(client_certificates=browser_certificate(shared_server, tmp_path))


def test_a_page_of_another_site_changes_nothing_with_the_browsers_certificate(
        holder: BrowserContext, attacker: AttackerSite, shared_server: ServerProcess) -> None:
    server = shared_server
    session, jobs = create_collection(server, "Standard")
    assert session.put(f"{jobs}/kept", json=JOB).status_code == 201
    # The browser does hold a certificate the service takes: its own request reads the job.
    page = holder.new_page()
    assert page.goto(f"{jobs}/kept").status == 200

    arm_collection = (f"{server.base_url}/subscriptions/{server.subscription_id}/resourceGroups/"
                      "cs1/providers/Microsoft.Scheduler/jobCollections/jc1")
    # A text/plain form whose body reads as a job document; a form that would disable every
    # job through Resource Manager; one that asks the token endpoint for a certificate token.
    attacker.pages["/job"] = auto_submitted_form(
        jobs, {'{"startTime":"2030-01-01T00:00:00Z","action":{"type":"http","request":'
               '{"uri":"http://example.com/","method":"GET"}},"x":"': '"}'}, "text/plain")
    attacker.pages["/disable"] = auto_submitted_form(
        f"{arm_collection}/disable?api-version=2016-03-01", {},
        "application/x-www-form-urlencoded")
    attacker.pages["/token"] = auto_submitted_form(
        f"{server.base_url}/{server.subscription_id}/oauth2/v2.0/token",
        {"grant_type": "client_credentials", "client_id": "anyone"},
        "application/x-www-form-urlencoded")
    for name in ("/job", "/disable", "/token"):
        with page.expect_navigation(url=re.compile(re.escape(server.base_url))) as sent:
            page.goto(attacker.url(name))
        answer = sent.value
        assert answer is not None and answer.status == 403, (name, answer and answer.text())
        # Refused for where it came from, not for want of a certificate: the browser sent it.
        assert re.search(r"ForeignOrigin|access_denied", answer.text()), (name, answer.text())

    # A script's own request: the browser asks first (CORS), the service says nothing that
    # allows it, and the request itself is never sent.
    attacker.pages["/script"] = "<!doctype html><title>script</title>"
    page.goto(attacker.url("/script"))
    outcome = page.evaluate(
        """async ([url, body]) => {
             try {
               const r = await fetch(url, {method: "PUT", credentials: "include",
                 headers: {"Content-Type": "application/json"}, body});
               return "answered " + r.status;
             } catch (e) { return "refused"; }
           }""", [f"{jobs}/scripted", '{"startTime": "2030-01-01T00:00:00Z"}'])
    assert outcome == "refused"

    listed = session.get(jobs).json()
    assert [job["id"] for job in listed] == ["kept"]
    assert listed[0]["state"] == "enabled"
    with sqlite3.connect(server.home / "scheduler.db") as db:
        assert db.execute("SELECT count(*) FROM access_tokens").fetchone() == (0,)
