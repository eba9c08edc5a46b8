"""The dashboard shows a job's scheduling policies, marks waiting and skipped runs apart,
and backfills a past range from the job's page."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
from flask import Flask
from flask.testing import FlaskClient

from scheduler.clock import FrozenClock
from tests.engine.harness import NodeDriver, Receiver
from tests.support import JOBS, Tenant

HTTPS = "https://localhost"
COLLECTION = "/cloudservices/cs1/resources/scheduler/~/jobcollections/jc1"
CsrfOf = Callable[[FlaskClient, str], str]


def job_page(tenant: Tenant, job_id: str) -> str:
    """The dashboard's page of a job of the tenant's collection cs1/jc1."""
    return f"/ui/{tenant.subscription_id}{COLLECTION}/jobs/{job_id}"


def text(client: FlaskClient, path: str) -> str:
    """A page's HTML, which must be there."""
    response = client.get(path, base_url=HTTPS)
    assert response.status_code == 200, (path, response.status_code)
    return response.get_data(as_text=True)


def policies_of(page: str) -> dict[str, str]:
    """The Policies block of a job's page, by name; empty when the page has none."""
    if 'id="policies"' not in page:
        return {}
    block = page.split('id="policies"', 1)[1].split("</section>", 1)[0]
    return dict(re.findall(r"<dt>(.*?)</dt><dd>(.*?)</dd>", block, re.S))


def runs(tenant: Tenant, job_id: str) -> Counter[tuple[str, str]]:
    """How many of the job's executions have each trigger and status."""
    found = tenant.call("GET", f"{JOBS}/{job_id}/executions?$top=1000").get_json()
    return Counter((run["trigger"], run["status"]) for run in found)


def hourly(receiver: Receiver, path: str) -> dict[str, object]:
    """A job that POSTs to the receiver every hour from 13:00, without retries."""
    job = receiver.job(path, startTime="2026-03-01T13:00:00Z",
                       recurrence={"frequency": "hour", "interval": 1})
    job["action"]["retryPolicy"] = {"retryType": "none"}
    return job


def test_a_job_page_lists_the_policies_a_job_sets_and_a_plain_job_none(
        signed_in: FlaskClient, collection: Tenant) -> None:
    assert collection.call("PUT", f"{COLLECTION}/calendars/holidays",
                           {"rules": ["FREQ=YEARLY;BYMONTH=12;BYMONTHDAY=25"]}
                           ).status_code == 201
    assert collection.call("PUT", JOBS + "/strict", {
        "action": {"type": "http", "request": {"uri": "https://example.com/", "method": "GET",
                                               "timeout": "PT5M"}},
        "concurrencyPolicy": "bufferOne", "runOn": ["Rack-1", "rack-2"],
        "catchUp": {"policy": "all", "window": "P1D", "maxRuns": 10},
        "recurrence": {"cron": "0 9 * * MON-FRI", "timeZone": "Europe/Berlin",
                       "jitter": "PT10M", "excludeCalendars": ["holidays"]}}).status_code == 201
    assert collection.call("PATCH", JOBS + "/strict", {
        "state": "disabled", "disabledUntil": "2026-03-02T09:30:00Z"}).status_code == 200
    page = text(signed_in, job_page(collection, "strict"))
    assert policies_of(page) == {
        "Overlapping runs": "a new run waits behind the open one; at most one waits, others "
                            "are skipped (bufferOne)",
        "Missed runs": "after an outage, run every missed occurrence, at most 10 at once, "
                       "none older than 24 h (all)",
        "Cron": "0 9 * * MON-FRI",
        "Jitter": "each run up to 10 min later than its time",
        "Excluded calendars": "holidays",
        "Timeout": "5 min per attempt",
        "Runs on": "the engine nodes rack-1, rack-2",
        "Disabled until": "2026-03-02 10:30:00 UTC+01:00 (in 21 h 30 min)"}
    counters = page.split('class="counters"', 1)[1].split("</dl>", 1)[0]
    assert "Timeout" not in counters  # said once, among the policies
    plain = text(signed_in, job_page(collection, "j1"))
    assert policies_of(plain) == {} and "Policies" not in plain
    assert "<dt>Timeout</dt><dd>1 min (the service&#39;s default)</dd>" in plain


def test_waiting_and_skipped_runs_have_marks_of_their_own(
        signed_in: FlaskClient, collection: Tenant, receiver: Receiver,
        csrf_of: CsrfOf) -> None:
    assert collection.call("PUT", JOBS + "/busy", receiver.job(
        "/busy", startTime="2099-01-01T00:00:00Z")).status_code == 201
    page = job_page(collection, "busy")
    token = csrf_of(signed_in, page)
    for overlap in ("", "bufferOne", "skip"):  # the first stays pending: none runs it
        response = signed_in.post(page + "/run", base_url=HTTPS,
                                  data={"csrf": token, "overlap": overlap})
        assert response.status_code == 303, response.data
    assert runs(collection, "busy") == {("manual", "pending"): 1, ("manual", "waiting"): 1,
                                        ("manual", "skipped"): 1}
    shown = text(signed_in, page)
    strip = shown.split('class="strip"', 1)[1].split("</svg>", 1)[0]
    cells = re.findall(r'<rect class="run (\w+)"[^>]*><title>(.*?)</title>', strip)
    assert [kind for kind, _ in cells] == ["pending", "waiting", "skipped"]
    assert cells[1][1].startswith("waiting behind an open run of its job")
    assert cells[2][1].startswith("skipped: an earlier run of the job was still open")
    assert "concurrencyPolicy skip" in cells[2][1]
    # A day whose ended runs were all skipped is a skipped day in the calendar.
    heatmap = shown.split('class="heatmap"', 1)[1].split("</svg>", 1)[0]
    assert re.search(r'<rect class="day skipped"[^>]*><title>Sun 2026-03-01: 1 skipped</title>',
                     heatmap)
    wrong = signed_in.post(page + "/run", base_url=HTTPS,
                           data={"csrf": token, "overlap": "sometimes"})
    assert wrong.status_code == 400
    assert "overlap: must be one of allow, skip, bufferOne, bufferAll, replace" in \
        wrong.get_data(as_text=True)
    assert sum(runs(collection, "busy").values()) == 3


def test_a_backfill_from_the_job_page_runs_what_was_missed_and_says_how_many(
        signed_in: FlaskClient, collection: Tenant, receiver: Receiver, driver: NodeDriver,
        clock: FrozenClock, csrf_of: CsrfOf) -> None:
    assert collection.call("PUT", JOBS + "/hourly", hourly(receiver, "/ok")).status_code \
        == 201
    clock.advance(timedelta(hours=3))  # 15:00: no engine ran at 13:00 and 14:00
    while driver.step():
        pass
    assert runs(collection, "hourly") == {("schedule", "missed"): 2,
                                          ("schedule", "completed"): 1}
    page = job_page(collection, "hourly")
    form = text(signed_in, page)
    assert 'name="start"' in form and "To, included (UTC; not after now)" in form
    response = signed_in.post(page + "/backfill", base_url=HTTPS, data={
        "csrf": csrf_of(signed_in, page), "start": "2026-03-01T13:00",
        "end": "2026-03-01T16:00:00+01:00", "onlyMissed": "true", "overlap": "bufferAll",
        "note": "after the outage"})
    assert response.status_code == 303, response.data
    location = urlsplit(response.headers["Location"])
    assert location.path == page
    assert parse_qs(location.query) == {"backfilled": ["2"], "ranAlready": ["1"],
                                        "excluded": ["0"]}
    shown = text(signed_in, f"{location.path}?{location.query}")
    notice = shown.split('id="backfill-notice">', 1)[1].split("</p>", 1)[0]
    assert notice == ("Backfill: 2 runs made; left out 1 that ran already and 0 that a "
                      "calendar excludes.")
    while driver.step():
        pass
    assert runs(collection, "hourly") == {("schedule", "missed"): 2,
                                          ("schedule", "completed"): 1,
                                          ("backfill", "completed"): 2}
    table = text(signed_in, page).split('class="runs"', 1)[1].split("</table>", 1)[0]
    assert table.count('<td class="trigger backfill">backfill</td>') == 2
    audit = text(signed_in, f"/ui/{collection.subscription_id}{COLLECTION}/audit")
    assert "job.backfill" in audit and "after the outage" in audit


@pytest.mark.parametrize(("form", "message"), [
    ({"start": "2026-03-01T13:00", "end": "2026-03-01T18:00"},
     "end: must not be after now; a backfill runs past occurrences"),
    ({"start": "2026-03-01T14:00", "end": "2026-03-01T13:00"}, "start: must not be after end"),
    ({"start": "", "end": "2026-03-01T13:00"}, "start: is required"),
    ({"start": "yesterday", "end": "2026-03-01T13:00"},
     "start: &#39;yesterday&#39; is not an ISO-8601 date-time"),
    ({"start": "2026-03-01T13:00", "end": "2026-03-01T14:00", "overlap": "never"},
     "overlap: must be one of"),
])
def test_a_bad_backfill_shows_the_problem_and_makes_nothing(
        signed_in: FlaskClient, collection: Tenant, receiver: Receiver, clock: FrozenClock,
        csrf_of: CsrfOf, form: dict[str, str], message: str) -> None:
    assert collection.call("PUT", JOBS + "/hourly", hourly(receiver, "/ok")).status_code \
        == 201
    clock.advance(timedelta(hours=3))
    page = job_page(collection, "hourly")
    response = signed_in.post(page + "/backfill", base_url=HTTPS,
                              data={"csrf": csrf_of(signed_in, page), **form})
    assert response.status_code == 400
    assert message in response.get_data(as_text=True)
    assert runs(collection, "hourly") == {}
    audit = text(signed_in, f"/ui/{collection.subscription_id}{COLLECTION}/audit")
    assert "job.backfill" not in audit


def test_a_read_only_dashboard_has_no_backfill_form_and_refuses_one(
        app: Flask, signed_in: FlaskClient, collection: Tenant, receiver: Receiver,
        clock: FrozenClock, monkeypatch: pytest.MonkeyPatch, csrf_of: CsrfOf) -> None:
    assert collection.call("PUT", JOBS + "/hourly", hourly(receiver, "/ok")).status_code \
        == 201
    clock.advance(timedelta(hours=3))
    page = job_page(collection, "hourly")
    token = csrf_of(signed_in, page)
    runtime = app.extensions["scheduler"]
    monkeypatch.setattr(runtime, "settings", runtime.settings.__class__(
        **{**runtime.settings.__dict__,
           "ui": runtime.settings.ui.__class__(read_only=True)}))
    assert "Backfill" not in text(signed_in, page)
    response = signed_in.post(page + "/backfill", base_url=HTTPS, data={
        "csrf": token, "start": "2026-03-01T13:00", "end": "2026-03-01T15:00"})
    assert response.status_code == 403
    assert "read-only" in response.get_data(as_text=True)
    assert runs(collection, "hourly") == {}
