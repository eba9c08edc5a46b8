"""Signing in to the dashboard: as the presented certificate, or with a one-time link; the
session's cookie, lifetime, CSRF token and subscription."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from scheduler.clock import FrozenClock
from scheduler.db.session import Database
from scheduler.services.certificates import delete_certificate
from scheduler.services.dashboard_sessions import create_link
from tests.support import JOBS, Tenant

HTTPS = "https://localhost"
COOKIE = "__Host-scheduler-ui"
SIGN_IN_COOKIE = "__Host-scheduler-sign-in"
OpenBrowser = Callable[[Tenant | None], FlaskClient]
CsrfOf = Callable[[FlaskClient, str], str]


def test_a_page_without_a_session_sends_the_browser_to_sign_in(
        open_browser: OpenBrowser, tenant: Tenant) -> None:
    response = open_browser(None).get(f"/ui/{tenant.subscription_id}/", base_url=HTTPS)
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/ui/sign-in?next=")


@pytest.fixture
def link(db: Database, clock: FrozenClock, tenant: Tenant) -> str:
    """A fresh one-time sign-in link's token for the tenant's certificate."""
    with db.transaction() as session:
        return create_link(session, tenant.subscription_id, tenant.certificate.thumbprint,
                           clock.now())


def session_cookie(response: TestResponse) -> str:
    """The session's cookie a response sets, or ""."""
    return next((cookie for cookie in response.headers.getlist("Set-Cookie")
                 if cookie.startswith(COOKIE + "=")), "")


def test_a_presented_certificate_continues_with_a_strict_secure_cookie(
        open_browser: OpenBrowser, tenant: Tenant) -> None:
    client = open_browser(tenant)
    page = client.get("/ui/sign-in", base_url=HTTPS).get_data(as_text=True)
    assert f"in subscription {tenant.subscription_id}" in page
    token = page.split('name="csrf" value="', 1)[1].split('"', 1)[0]
    response = client.post("/ui/sign-in/certificate", base_url=HTTPS,
                           data={"subscription": tenant.subscription_id, "csrf": token})
    assert response.status_code == 303
    cookie = session_cookie(response)
    for attribute in ("Secure", "HttpOnly", "SameSite=Strict", "Path=/"):
        assert attribute in cookie
    overview = client.get(f"/ui/{tenant.subscription_id}/", base_url=HTTPS)
    assert overview.status_code == 200
    policy = overview.headers["Content-Security-Policy"]
    assert "script-src 'self'" in policy and "style-src 'self'" in policy
    assert "unsafe-inline" not in policy


def test_a_certificate_of_another_subscription_cannot_continue_into_this_one(
        open_browser: OpenBrowser, tenant: Tenant, other_tenant: Tenant,
        csrf_of: CsrfOf) -> None:
    client = open_browser(other_tenant)
    token = csrf_of(client, "/ui/sign-in")
    response = client.post("/ui/sign-in/certificate", base_url=HTTPS,
                           data={"subscription": tenant.subscription_id, "csrf": token})
    assert response.status_code == 403
    assert session_cookie(response) == ""


def test_the_sign_in_pages_set_a_short_lived_strict_cookie_holding_their_forms_token(
        open_browser: OpenBrowser, tenant: Tenant, link: str) -> None:
    for path in ("/ui/sign-in", f"/ui/sign-in/link/{link}"):
        response = open_browser(tenant).get(path, base_url=HTTPS)
        page = response.get_data(as_text=True)
        token = page.split('name="csrf" value="', 1)[1].split('"', 1)[0]
        cookie = response.headers["Set-Cookie"]
        assert cookie.startswith(f"{SIGN_IN_COOKIE}={token};"), path
        for attribute in ("Secure", "HttpOnly", "SameSite=Strict", "Path=/", "Max-Age=600"):
            assert attribute in cookie, (path, attribute)


def test_a_second_sign_in_page_keeps_the_first_ones_token(
        open_browser: OpenBrowser, tenant: Tenant, csrf_of: CsrfOf) -> None:
    client = open_browser(tenant)
    assert csrf_of(client, "/ui/sign-in") == csrf_of(client, "/ui/sign-in")


@pytest.mark.parametrize("sent", ["", "forged", None])
def test_a_certificate_sign_in_without_its_pages_token_opens_no_session(
        open_browser: OpenBrowser, tenant: Tenant, csrf_of: CsrfOf, sent: str | None) -> None:
    client = open_browser(tenant)
    token = csrf_of(client, "/ui/sign-in")
    form = {"subscription": tenant.subscription_id}
    if sent is not None:
        form["csrf"] = sent
    response = client.post("/ui/sign-in/certificate", base_url=HTTPS, data=form)
    assert response.status_code == 403
    assert "CSRF token" in response.get_data(as_text=True)
    assert session_cookie(response) == ""
    # The right token without its cookie (a browser that never opened the page) is refused too.
    bare = open_browser(tenant).post("/ui/sign-in/certificate", base_url=HTTPS,
                                     data={**form, "csrf": token})
    assert bare.status_code == 403
    assert session_cookie(bare) == ""


@pytest.mark.parametrize("sent", ["", "forged", None])
def test_a_sign_in_link_posted_without_its_pages_token_is_not_used_up(
        open_browser: OpenBrowser, tenant: Tenant, link: str, csrf_of: CsrfOf,
        sent: str | None) -> None:
    client = open_browser(None)
    token = csrf_of(client, f"/ui/sign-in/link/{link}")
    form = {} if sent is None else {"csrf": sent}
    refused = client.post(f"/ui/sign-in/link/{link}", base_url=HTTPS, data=form)
    assert refused.status_code == 403
    assert session_cookie(refused) == ""
    bare = open_browser(None).post(f"/ui/sign-in/link/{link}", base_url=HTTPS,
                                   data={"csrf": token})
    assert bare.status_code == 403
    # The link still works, once, from its own page.
    used = client.post(f"/ui/sign-in/link/{link}", base_url=HTTPS, data={"csrf": token})
    assert used.status_code == 303
    assert session_cookie(used) != ""
    assert SIGN_IN_COOKIE + "=;" in " ".join(used.headers.getlist("Set-Cookie"))


def test_a_sign_in_link_works_once(open_browser: OpenBrowser, tenant: Tenant, link: str,
                                   csrf_of: CsrfOf) -> None:
    client = open_browser(None)  # no certificate at all
    token = csrf_of(client, f"/ui/sign-in/link/{link}")
    first = client.post(f"/ui/sign-in/link/{link}", base_url=HTTPS, data={"csrf": token})
    assert first.status_code == 303
    assert client.get(f"/ui/{tenant.subscription_id}/", base_url=HTTPS).status_code == 200
    other = open_browser(None)
    token = csrf_of(other, f"/ui/sign-in/link/{link}")
    again = other.post(f"/ui/sign-in/link/{link}", base_url=HTTPS, data={"csrf": token})
    assert again.status_code == 403
    assert "works once" in again.get_data(as_text=True)


def test_a_sign_in_link_expires_after_ten_minutes(open_browser: OpenBrowser,
                                                  clock: FrozenClock, link: str,
                                                  csrf_of: CsrfOf) -> None:
    client = open_browser(None)
    token = csrf_of(client, f"/ui/sign-in/link/{link}")
    clock.advance(timedelta(minutes=10))
    response = client.post(f"/ui/sign-in/link/{link}", base_url=HTTPS, data={"csrf": token})
    assert response.status_code == 403
    assert "works once" in response.get_data(as_text=True)


def test_the_api_gives_a_link_for_the_calling_certificate(open_browser: OpenBrowser,
                                                          tenant: Tenant, csrf_of: CsrfOf
                                                          ) -> None:
    response = tenant.call("POST", "/dashboard/links")
    assert response.status_code == 201
    url = response.get_json()["url"]
    path = url[url.index("/ui/"):]
    client = open_browser(None)
    token = csrf_of(client, path)
    assert client.post(path, base_url=HTTPS, data={"csrf": token}).status_code == 303
    assert client.get(f"/ui/{tenant.subscription_id}/", base_url=HTTPS).status_code == 200


def test_a_session_ends_after_eight_idle_hours(app: Flask, clock: FrozenClock,
                                               signed_in: FlaskClient, collection: Tenant
                                               ) -> None:
    page = f"/ui/{collection.subscription_id}/"
    clock.advance(timedelta(hours=7, minutes=59))
    assert signed_in.get(page, base_url=HTTPS).status_code == 200  # use: idle starts again
    clock.advance(timedelta(hours=7, minutes=59))
    assert signed_in.get(page, base_url=HTTPS).status_code == 200
    clock.advance(timedelta(hours=8))
    assert signed_in.get(page, base_url=HTTPS).status_code == 302


def test_polling_does_not_keep_a_session_alive(app: Flask, clock: FrozenClock,
                                              signed_in: FlaskClient, collection: Tenant
                                              ) -> None:
    page = f"/ui/{collection.subscription_id}/"
    for _ in range(3):
        clock.advance(timedelta(hours=3))
        signed_in.get(page, base_url=HTTPS, headers={"X-Dashboard-Poll": "1"})
    assert signed_in.get(page, base_url=HTTPS).status_code == 302


def test_a_session_ends_after_seven_days_however_busy(app: Flask, clock: FrozenClock,
                                                     signed_in: FlaskClient,
                                                     collection: Tenant) -> None:
    page = f"/ui/{collection.subscription_id}/"
    for _ in range(6 * 24 // 6):
        clock.advance(timedelta(hours=6))
        assert signed_in.get(page, base_url=HTTPS).status_code == 200
    clock.advance(timedelta(days=1))
    assert signed_in.get(page, base_url=HTTPS).status_code == 302


def test_deleting_the_certificate_ends_its_sessions_at_once(
        app: Flask, db: Database, clock: FrozenClock, signed_in: FlaskClient,
        collection: Tenant) -> None:
    with db.transaction() as session:
        delete_certificate(session, collection.subscription_id,
                           collection.certificate.thumbprint, clock.now())
    response = signed_in.get(f"/ui/{collection.subscription_id}/", base_url=HTTPS)
    assert response.status_code == 302


def test_another_subscriptions_pages_are_not_found(
        app: Flask, signed_in: FlaskClient, other_tenant: Tenant) -> None:
    for path in ("/", "/jobs", "/engine", "/certificates",
                 "/cloudservices/cs1/resources/scheduler/~/jobcollections/jc1/jobs/j1"):
        response = signed_in.get(f"/ui/{other_tenant.subscription_id}{path}", base_url=HTTPS)
        assert response.status_code == 404, path
        assert "text/html" in response.headers["Content-Type"]


def test_a_form_without_the_sessions_csrf_token_changes_nothing(
        app: Flask, signed_in: FlaskClient, collection: Tenant) -> None:
    path = (f"/ui/{collection.subscription_id}/cloudservices/cs1/resources/scheduler/~/"
            "jobcollections/jc1/jobs/j1/state")
    for token in ("", "forged"):
        response = signed_in.post(path, base_url=HTTPS,
                                  data={"state": "disabled", "note": "x", "csrf": token})
        assert response.status_code == 403
    assert collection.call("GET", JOBS + "/j1").get_json()["state"] == "enabled"


def test_read_only_hides_every_action_and_refuses_forms(
        app: Flask, signed_in: FlaskClient, collection: Tenant,
        monkeypatch: pytest.MonkeyPatch, csrf_of: Callable[[FlaskClient, str], str]) -> None:
    job_page = (f"/ui/{collection.subscription_id}/cloudservices/cs1/resources/scheduler/~/"
                "jobcollections/jc1/jobs/j1")
    token = csrf_of(signed_in, job_page)
    runtime = app.extensions["scheduler"]
    monkeypatch.setattr(runtime, "settings", runtime.settings.__class__(
        **{**runtime.settings.__dict__,
           "ui": runtime.settings.ui.__class__(read_only=True)}))
    page = signed_in.get(job_page, base_url=HTTPS).get_data(as_text=True)
    assert "Run now" not in page and "Disable" not in page and "Delete" not in page
    response = signed_in.post(job_page + "/state", base_url=HTTPS,
                              data={"state": "disabled", "csrf": token})
    assert response.status_code == 403
    assert "read-only" in response.get_data(as_text=True)
    assert collection.call("GET", JOBS + "/j1").get_json()["state"] == "enabled"
    signed_out = signed_in.post("/ui/sign-out", base_url=HTTPS, data={"csrf": token})
    assert signed_out.status_code == 303  # signing out changes nothing of the service
    assert signed_in.get(job_page, base_url=HTTPS).status_code == 302
