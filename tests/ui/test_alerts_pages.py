"""A job's alerts on its page and a collection's page of alerts and channels: the rules in
words and whose they are, each alert the engine really made with its delivery per channel
(sent, pending with its next try, failed after its last), the channels without a secret, and
the button that sends a channel a test message, refused without the session's CSRF token and
while the dashboard is read-only."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from scheduler.clock import FrozenClock
from scheduler.domain.alerts import MAX_DELIVERY_ATTEMPTS
from tests.engine.harness import NodeDriver, Receiver
from tests.support import JOBS, Tenant
from tests.ui.markup import HTTPS, Element, collection_ui, page

CsrfOf = Callable[[FlaskClient, str], str]
COLLECTION = JOBS.rsplit("/", 1)[0]
CHANNELS = f"{COLLECTION}/notificationChannels"
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SLACK_PATH = "/services/T0001/B0002/slackTokenPart"


@pytest.fixture
def hooks(start_receiver: Callable[..., Receiver]) -> Receiver:
    """The webhook receiver that alerts and test messages go to."""
    return start_receiver()


@pytest.fixture
def channels(collection: Tenant, hooks: Receiver) -> tuple[str, str]:
    """Two webhook channels of the collection: `ops`, signed, which takes what it is sent,
    and `pager`, which answers 503."""
    hooks.answers["/pager"] = (503, {}, b"pager is down")
    for name, path, extra in (("ops", "/ops", {"secret": SECRET}), ("pager", "/pager", {})):
        response = collection.call("PUT", f"{CHANNELS}/{name}", {
            "type": "webhook", "url": hooks.url(path), **extra})
        assert response.status_code == 201, response.data
    return "ops", "pager"


def at(clock: FrozenClock, minute: int, second: int = 0) -> None:
    """Set the clock to 12:`minute`:`second`."""
    clock.set(datetime(2026, 3, 1, 12, minute, second, tzinfo=UTC))


def failing_job(receiver: Receiver, alerts: dict[str, Any] | None) -> dict[str, Any]:
    """A job calling the receiver's `/fail` (which answers 500) every minute from 12:01,
    without retries."""
    receiver.answers["/fail"] = (500, {}, b"broken")
    return receiver.minutely(action={"type": "http", "request": {
        "uri": receiver.url("/fail"), "method": "GET"}, "retryPolicy": {"retryType": "none"}},
        alerts=alerts)


def rows_by_job(table: Element) -> list[dict[str, Any]]:
    """An alerts table's rows as the columns named by its header, each delivery item apart."""
    names = [cell.text for cell in table.one("thead").find_all("th")]
    found = []
    for row in table.one("tbody").find_all("tr"):
        cells = [cell for cell in row.children if isinstance(cell, Element)]
        shown: dict[str, Any] = dict(zip(names, [cell.text for cell in cells], strict=True))
        shown["Delivery"] = [item.text for item in row.find_all("li")]
        shown["links"] = [link.attrs["href"] for link in row.find_all("a")]
        shown["local"] = [time.attrs["datetime"] for time in row.find_all("time")
                          if "data-local" in time.attrs]
        found.append(shown)
    return found


def test_the_rules_in_words_say_whether_they_are_the_job_s_own_the_default_or_none(
        signed_in: FlaskClient, collection: Tenant, receiver: Receiver,
        channels: tuple[str, str]) -> None:
    sub = collection.subscription_id
    own = receiver.minutely(alerts={"on": ["failed", "recovered"], "afterConsecutive": 3,
                                    "realert": "PT1H", "channels": ["ops"]})
    assert collection.call("PUT", f"{JOBS}/own", own).status_code == 201
    assert collection.call("PUT", f"{JOBS}/plain", receiver.minutely()).status_code == 201

    def rules_of(job_id: str) -> str:
        return page(signed_in, collection_ui(sub, f"/jobs/{job_id}")).one(
            id="alert-rules").text

    assert rules_of("own").startswith(
        "Alert rules: its own: on failed, recovered to ops, after 3 failures in a row, "
        "again every PT1H.")
    assert rules_of("plain").startswith(
        "Alert rules: none (neither the job nor its collection sets any).")
    collection_page = page(signed_in, collection_ui(sub, "/alerts"))
    assert collection_page.one(id="default-rules-words").text == (
        "None: jobs without alert rules of their own make no alerts.")

    response = collection.call("PUT", f"{COLLECTION}/defaultAlerts",
                               {"on": ["faulted"], "channels": ["ops", "pager"]})
    assert response.status_code == 200, response.data
    assert rules_of("plain").startswith(
        "Alert rules: the collection's default: on faulted to ops, pager.")
    assert rules_of("own").startswith("Alert rules: its own: on failed, recovered to ops")
    collection_page = page(signed_in, collection_ui(sub, "/alerts"))
    assert collection_page.one(id="default-rules-words").text == (
        "Jobs without alert rules of their own follow these: on faulted to ops, pager.")
    job_page = page(signed_in, collection_ui(sub, "/jobs/plain"))
    assert job_page.section("alerts").one("p", class_="quiet").text == (
        "No alert has been made for this job.")
    [link] = job_page.one(id="alert-rules").find_all("a")
    assert link.attrs["href"] == collection_ui(sub, "/alerts")


def test_each_alert_says_where_it_was_delivered_retried_or_given_up(
        signed_in: FlaskClient, collection: Tenant, receiver: Receiver, hooks: Receiver,
        alerting: NodeDriver, clock: FrozenClock, channels: tuple[str, str]) -> None:
    sub = collection.subscription_id
    assert collection.call("PUT", f"{JOBS}/quiet", failing_job(
        receiver, {"on": ["failed"], "channels": ["ops"]})).status_code == 201
    assert collection.call("PUT", f"{JOBS}/loud", failing_job(
        receiver, {"on": ["failed"], "channels": ["ops", "pager"]})).status_code == 201
    at(clock, 1)
    alerting.work()

    [sent] = rows_by_job(page(signed_in, collection_ui(sub, "/jobs/quiet"))
                         .section("alerts").one("table", class_="alerts"))
    execution = collection.call("GET", f"{JOBS}/quiet/executions").get_json()[0]["id"]
    assert sent["Time"] == "2026-03-01 12:01:00 UTC+00:00"
    assert sent["local"] == ["2026-03-01T12:01:00Z"]
    assert (sent["Event"], sent["Status"]) == ("failed", "sent")
    assert sent["Alert"].startswith("The job quiet failed. Its last attempt said:")
    assert sent["Delivery"] == ["delivered to ops"]
    assert sent["links"] == [collection_ui(sub, f"/jobs/quiet/executions/{execution}")]
    assert "Job" not in sent

    [pending] = rows_by_job(page(signed_in, collection_ui(sub, "/jobs/loud"))
                            .one("table", class_="alerts"))
    assert pending["Status"] == "pending"
    assert pending["Delivery"] == [
        "delivered to ops",
        "pager: not delivered: the target answered 503 Service Unavailable: pager is down; "
        "trying again at 2026-03-01 12:01:10 UTC+00:00"]
    assert pending["local"] == ["2026-03-01T12:01:00Z", "2026-03-01T12:01:10Z"]

    for _ in range(MAX_DELIVERY_ATTEMPTS - 1):  # every retry of `pager` is refused too
        clock.advance(due_in(collection, "loud"))
        alerting.run_timers()
        alerting.settle()
    [failed] = rows_by_job(page(signed_in, collection_ui(sub, "/jobs/loud"))
                           .one("table", class_="alerts"))
    assert failed["Status"] == "failed"
    assert failed["Delivery"] == [
        "delivered to ops",
        "pager: not delivered: the target answered 503 Service Unavailable: pager is down; "
        f"no more tries after {MAX_DELIVERY_ATTEMPTS}"]
    assert [request.path for request in hooks.requests].count("/ops") == 2

    listed = rows_by_job(page(signed_in, collection_ui(sub, "/alerts"))
                         .section("recent-alerts").one("table", class_="alerts"))
    assert sorted((row["Job"], row["Status"]) for row in listed) == [
        ("loud", "failed"), ("quiet", "sent")]
    assert all(row["links"][0] == collection_ui(sub, f"/jobs/{row['Job']}")
               for row in listed)


def due_in(collection: Tenant, job_id: str) -> Any:
    """How long until the job's one alert is tried again."""
    [alert] = collection.call("GET", f"{JOBS}/{job_id}/alerts").get_json()["value"]
    due = datetime.fromisoformat(alert["nextAttemptAt"].replace("Z", "+00:00"))
    return due - datetime.fromisoformat(
        alert["deliveries"]["pager"]["at"].replace("Z", "+00:00"))


def test_the_channels_say_what_they_do_and_never_show_a_secret(
        signed_in: FlaskClient, collection: Tenant, channels: tuple[str, str],
        hooks: Receiver) -> None:
    response = collection.call("PUT", f"{CHANNELS}/chat", {
        "type": "slack", "url": f"https://hooks.slack.example.com{SLACK_PATH}"})
    assert response.status_code == 201, response.data
    path = collection_ui(collection.subscription_id, "/alerts")
    html = signed_in.get(path, base_url=HTTPS).get_data(as_text=True)
    assert SECRET not in html and SECRET[6:] not in html
    assert SLACK_PATH not in html and "slackTokenPart" not in html
    rows = page(signed_in, path).section("channels").one("table").rows()
    assert [row[:4] for row in rows] == [
        ["chat", "slack", "slack to https://hooks.slack.example.com", "none sent"],
        ["ops", "webhook", f"webhook to {hooks.url('/ops')}, signed", "none sent"],
        ["pager", "webhook", f"webhook to {hooks.url('/pager')}", "none sent"]]
    assert [row[4] for row in rows] == [f"Send a test message to {name}"
                                        for name in ("chat", "ops", "pager")]


def test_a_collection_without_channels_says_so_and_is_linked_from_its_jobs(
        signed_in: FlaskClient, collection: Tenant) -> None:
    sub = collection.subscription_id
    jobs = page(signed_in, collection_ui(sub, "/jobs"))
    assert collection_ui(sub, "/alerts") in [link.attrs["href"] for link in jobs.find_all("a")]
    alerts = page(signed_in, collection_ui(sub, "/alerts"))
    assert alerts.one("h1").text == "Alerts and channels of cs1 / jc1"
    assert alerts.section("channels").one("p").text.startswith(
        "This collection has no notification channel.")
    assert alerts.section("recent-alerts").one("p").text == (
        "No job of this collection has made an alert.")
    missing = signed_in.get(collection_ui(sub, "/alerts", collection="nope"), base_url=HTTPS)
    assert missing.status_code == 404


def test_the_test_button_sends_a_channel_its_test_message_and_says_how_it_went(
        signed_in: FlaskClient, collection: Tenant, hooks: Receiver,
        channels: tuple[str, str], csrf_of: CsrfOf) -> None:
    path = collection_ui(collection.subscription_id, "/alerts")
    token = csrf_of(signed_in, path)
    response = signed_in.post(f"{collection_ui(collection.subscription_id)}/channels/OPS/test",
                              base_url=HTTPS, data={"csrf": token})
    assert response.status_code == 303
    assert response.headers["Location"].endswith("/jobcollections/jc1/alerts?tested=ops")
    [sent] = hooks.requests
    assert sent.path == "/ops" and json.loads(sent.body)["type"] == "test"
    assert sent.header("webhook-signature").startswith("v1,")
    shown = page(signed_in, response.headers["Location"])
    assert shown.one(id="test-notice").text == (
        "The test message to ops, sent now, was delivered.")
    assert shown.one("tr", data_channel="ops").one("td", class_="last-test").text == (
        "delivered, now by first")

    response = signed_in.post(f"{collection_ui(collection.subscription_id)}/channels/pager/test",
                              base_url=HTTPS, data={"csrf": token})
    shown = page(signed_in, response.headers["Location"])
    notice = shown.one(id="test-notice")
    assert notice.text == ("The test message to pager, sent now, was not delivered: the target "
                           "answered 503 Service Unavailable: pager is down.")
    assert "bad" in notice.classes
    assert shown.one("tr", data_channel="ops").one("td", class_="last-test").text == (
        "delivered, now by first")
    audit = page(signed_in, collection_ui(collection.subscription_id, "/audit")).one("table")
    assert [row[2] for row in audit.rows()][:2] == ["channel.test", "channel.test"]


def test_a_test_message_without_the_csrf_token_or_of_no_channel_is_refused(
        signed_in: FlaskClient, collection: Tenant, hooks: Receiver,
        channels: tuple[str, str], csrf_of: CsrfOf) -> None:
    base = collection_ui(collection.subscription_id)
    refused = signed_in.post(f"{base}/channels/ops/test", base_url=HTTPS, data={})
    assert refused.status_code == 403
    assert "CSRF" in refused.get_data(as_text=True)
    forged = signed_in.post(f"{base}/channels/ops/test", base_url=HTTPS,
                            data={"csrf": "not-the-token"})
    assert forged.status_code == 403
    token = csrf_of(signed_in, f"{base}/alerts")
    missing = signed_in.post(f"{base}/channels/nobody/test", base_url=HTTPS,
                             data={"csrf": token})
    assert missing.status_code == 404
    assert "nobody" in missing.get_data(as_text=True)
    assert hooks.requests == []
    audit = signed_in.get(f"{base}/audit", base_url=HTTPS).get_data(as_text=True)
    assert "channel.test" not in audit


def test_a_read_only_dashboard_shows_no_test_button_and_refuses_the_form(
        app: Flask, signed_in: FlaskClient, collection: Tenant, hooks: Receiver,
        channels: tuple[str, str], csrf_of: CsrfOf, monkeypatch: pytest.MonkeyPatch) -> None:
    base = collection_ui(collection.subscription_id)
    token = csrf_of(signed_in, f"{base}/alerts")
    runtime = app.extensions["scheduler"]
    monkeypatch.setattr(runtime, "settings", runtime.settings.__class__(
        **{**runtime.settings.__dict__,
           "ui": runtime.settings.ui.__class__(read_only=True)}))
    shown = page(signed_in, f"{base}/alerts")
    assert shown.find_all("button", where=lambda b: "test message" in b.text) == []
    assert [row[0] for row in shown.section("channels").one("table").rows()] == [
        "ops", "pager"]
    response = signed_in.post(f"{base}/channels/ops/test", base_url=HTTPS,
                              data={"csrf": token})
    assert response.status_code == 403
    assert "read-only" in response.get_data(as_text=True)
    assert hooks.requests == []
