"""The dashboard's pages and forms over what the engine really did: failing first, strips,
run now, notes, the audit, delete, paging, DST marks, redacted requests."""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterator
from datetime import timedelta

from flask.testing import FlaskClient

from scheduler.clock import FrozenClock
from tests.engine.harness import Answer, NodeDriver, Receiver
from tests.support import JOBS, Tenant, collection_xml, http_job

HTTPS = "https://localhost"
NO_RETRY = {"retryType": "none"}
# A job that never comes due while a test runs.
FUTURE_JOB = http_job(startTime="2099-01-01T00:00:00Z")
CsrfOf = Callable[[FlaskClient, str], str]


def ui(tenant: Tenant, path: str = "/") -> str:
    """A dashboard path under the tenant's subscription."""
    return f"/ui/{tenant.subscription_id}{path}"


def collection_page(tenant: Tenant, path: str = "") -> str:
    """A dashboard path under the tenant's collection cs1/jc1."""
    return ui(tenant, "/cloudservices/cs1/resources/scheduler/~/jobcollections/jc1" + path)


def text(client: FlaskClient, path: str) -> str:
    """A page's HTML, which must be there."""
    response = client.get(path, base_url=HTTPS)
    assert response.status_code == 200, (path, response.status_code)
    return response.get_data(as_text=True)


def hourly(receiver: Receiver, path: str, **extra: object) -> dict[str, object]:
    """A job that POSTs to the receiver every hour from 13:00, without retries."""
    job = receiver.job(path, startTime="2026-03-01T13:00:00Z",
                       recurrence={"frequency": "hour", "interval": 1}, **extra)
    job["action"]["retryPolicy"] = NO_RETRY
    return job


def test_a_failing_job_leads_the_overview_and_the_list_with_its_streak_and_answer(
        signed_in: FlaskClient, collection: Tenant, receiver: Receiver, driver: NodeDriver,
        clock: FrozenClock) -> None:
    receiver.answers["/broken"] = (500, {}, b"database is down")
    assert collection.call("PUT", JOBS + "/nightly", hourly(receiver, "/broken")).status_code \
        == 201
    assert collection.call("PUT", JOBS + "/fine", hourly(receiver, "/ok")).status_code == 201
    for _ in range(2):
        clock.advance(timedelta(hours=1))
        driver.step()
    overview = text(signed_in, ui(collection))
    assert "<title>(1 failing) Overview" in overview
    failing = overview.split('id="failing"', 1)[1].split("</section>", 1)[0]
    assert "nightly" in failing and "fine" not in failing
    assert "2 times" in failing and "HTTP 500" in failing
    # Both jobs' runs at 13:00 and 14:00 started when they were due.
    assert "4 scheduled runs started: p50 0 ms, p99 0 ms" in overview
    listing = text(signed_in, collection_page(collection, "/jobs"))
    rows = re.findall(r'<tr class="(\w+)" data-job="(\w+)"', listing)
    assert rows == [("failing", "nightly"), ("ok", "fine"), ("ok", "j1")]
    assert listing.count('class="run failed"') == 2
    assert listing.count('class="run completed"') == 2


def test_the_strip_tells_retried_missed_and_canceled_runs_apart(
        signed_in: FlaskClient, collection: Tenant, receiver: Receiver, driver: NodeDriver,
        clock: FrozenClock, csrf_of: CsrfOf) -> None:
    answers: Iterator[Answer] = iter([(500, {}, b"no"), (200, {}, b"yes")])
    receiver.responder = lambda request: next(answers, (200, {}, b"ok"))
    job = receiver.job("/flaky", startTime="2026-03-01T13:00:00Z",
                       recurrence={"frequency": "hour", "interval": 1})
    job["action"]["retryPolicy"] = {"retryType": "fixed", "retryInterval": "PT30S",
                                    "retryCount": 2}
    assert collection.call("PUT", JOBS + "/flaky", job).status_code == 201
    clock.advance(timedelta(hours=1))
    driver.step()
    clock.advance(timedelta(seconds=30))
    driver.step()  # the retry succeeds
    clock.advance(timedelta(hours=3))  # two hours pass with no engine: missed
    driver.step()
    listing = text(signed_in, collection_page(collection, "/jobs"))
    row = listing.split('data-job="flaky"', 1)[1].split("</tr>", 1)[0]
    assert 'class="run retried"' in row
    assert 'class="run missed"' in row
    receiver.holds["/flaky"] = threading.Event()
    run = signed_in.post(collection_page(collection, "/jobs/flaky/run"), base_url=HTTPS,
                         data={"csrf": csrf_of(signed_in, collection_page(collection,
                                                                          "/jobs/flaky"))})
    assert run.status_code == 303
    execution = run.headers["Location"]
    cancel = signed_in.post(execution + "/cancel", base_url=HTTPS,
                            data={"csrf": csrf_of(signed_in, execution)})
    assert cancel.status_code == 303
    receiver.holds["/flaky"].set()
    row = text(signed_in, collection_page(collection, "/jobs")).split(
        'data-job="flaky"', 1)[1].split("</tr>", 1)[0]
    assert 'class="run canceled"' in row
    page = text(signed_in, execution)
    timeline = page.split('class="timeline"', 1)[1].split("</ol>", 1)[0]
    assert "<strong>canceled</strong>" in timeline and "first" in timeline


def test_run_now_with_a_parameter_runs_the_job_with_it(
        signed_in: FlaskClient, collection: Tenant, receiver: Receiver, driver: NodeDriver,
        csrf_of: CsrfOf) -> None:
    assert collection.call("PUT", JOBS + "/greet", receiver.job(
        startTime="2099-01-01T00:00:00Z")).status_code == 201
    job_page = collection_page(collection, "/jobs/greet")
    form = text(signed_in, job_page)
    assert 'name="param.who" value="world"' in form
    response = signed_in.post(job_page + "/run", base_url=HTTPS, data={
        "csrf": csrf_of(signed_in, job_page), "param.who": "dashboard"})
    assert response.status_code == 303
    driver.step()
    assert [request.body for request in receiver.requests] == [b"hello dashboard"]
    page = text(signed_in, response.headers["Location"])
    assert 'id="execution-status">completed<' in page
    assert "HTTP 200" in page


def test_jobs_disabled_together_carry_one_note_and_are_audited_by_certificate(
        signed_in: FlaskClient, collection: Tenant, csrf_of: CsrfOf) -> None:
    for job_id in ("a", "b"):
        assert collection.call("PUT", f"{JOBS}/{job_id}", FUTURE_JOB).status_code == 201
    listing = collection_page(collection, "/jobs")
    response = signed_in.post(listing + "/state", base_url=HTTPS, data={
        "csrf": csrf_of(signed_in, listing), "job": ["a", "b"], "state": "disabled",
        "note": "maintenance window"})
    assert response.status_code == 303
    for job_id in ("a", "b"):
        document = collection.call("GET", f"{JOBS}/{job_id}").get_json()
        assert document["state"] == "disabled"
        assert document["stateNote"] == "maintenance window"
        assert document["stateChangedBy"] == "first"
    audit = text(signed_in, collection_page(collection, "/audit"))
    assert audit.count("maintenance window") == 2
    assert "<td>first</td>" in audit
    overview = text(signed_in, ui(collection))
    assert "maintenance window" in overview.split('id="paused"', 1)[1]


def test_a_job_is_deleted_only_once_its_id_is_typed(
        signed_in: FlaskClient, collection: Tenant, csrf_of: CsrfOf) -> None:
    job_page = collection_page(collection, "/jobs/j1")
    token = csrf_of(signed_in, job_page)
    wrong = signed_in.post(job_page + "/delete", base_url=HTTPS,
                           data={"csrf": token, "confirm": "j2"})
    assert wrong.status_code == 400
    assert "type the job&#39;s id (j1)" in wrong.get_data(as_text=True)
    assert collection.call("GET", JOBS + "/j1").status_code == 200
    right = signed_in.post(job_page + "/delete", base_url=HTTPS,
                           data={"csrf": token, "confirm": "J1"})
    assert right.status_code == 303
    assert collection.call("GET", JOBS + "/j1").status_code == 404


def test_a_list_of_many_jobs_pages_filters_and_searches(
        signed_in: FlaskClient, collection: Tenant) -> None:
    big = "/cloudservices/cs1/resources/scheduler/jobcollections/big"
    assert collection.call("PUT", big, collection_xml("P20Premium")).status_code == 202
    jobs = "/cloudservices/cs1/resources/scheduler/~/jobcollections/big/jobs"
    for n in range(120):
        assert collection.call("PUT", f"{jobs}/job{n:03d}", FUTURE_JOB).status_code == 201
    assert collection.call("PATCH", f"{jobs}/job007", {"state": "disabled"}).status_code \
        == 200
    listing = ui(collection, "/cloudservices/cs1/resources/scheduler/~/jobcollections/big/jobs")
    first = text(signed_in, listing)
    assert "120 jobs, page 1 of 2" in first
    assert first.count("data-job=") == 100
    second = text(signed_in, listing + "?page=1")
    assert second.count("data-job=") == 20
    assert re.findall(r'data-job="(\w+)"', text(signed_in, listing + "?q=job11")) == [
        f"job11{n}" for n in range(10)]
    assert re.findall(r'data-job="(\w+)"', text(signed_in, listing + "?state=disabled")) \
        == ["job007"]
    everywhere = text(signed_in, ui(collection, "/jobs?status=disabled"))
    assert re.findall(r'data-job="(\w+)"', everywhere) == ["job007"]


def test_a_job_page_lists_twenty_runs_ahead_with_dst_marks(
        signed_in: FlaskClient, collection: Tenant) -> None:
    assert collection.call("PUT", JOBS + "/daily", {
        "startTime": "2027-03-10T00:00:00Z",
        "action": {"type": "http", "request": {"uri": "https://example.com/",
                                               "method": "GET"}},
        "recurrence": {"frequency": "day", "interval": 1, "timeZone": "America/New_York",
                       "schedule": {"hours": [2], "minutes": [30]}}}).status_code == 201
    page = text(signed_in, collection_page(collection, "/jobs/daily"))
    table = page.split('class="upcoming"', 1)[1].split("</table>", 1)[0]
    assert table.count("<time datetime=") == 20
    assert "every day at 02:30 (America/New_York)" in page
    marked = re.findall(r'<tr class="dst">(.*?)</tr>', table, re.S)
    assert len(marked) == 1
    assert "2027-03-14 03:30:00 UTC-04:00" in marked[0]
    assert "02:30 does not exist this day" in marked[0]
    assert "2027-03-14 07:30:00 UTC+00:00" in marked[0]


def test_an_execution_page_redacts_the_requests_secrets(
        signed_in: FlaskClient, collection: Tenant, receiver: Receiver, driver: NodeDriver,
        csrf_of: CsrfOf) -> None:
    job = receiver.job(startTime="2099-01-01T00:00:00Z")
    job["action"]["request"]["authentication"] = {
        "type": "basic", "username": "ops", "password": "hunter2"}
    job["action"]["request"]["headers"]["X-Api-Key"] = "k-secret"
    assert collection.call("PUT", JOBS + "/secret", job).status_code == 201
    job_page = collection_page(collection, "/jobs/secret")
    response = signed_in.post(job_page + "/run", base_url=HTTPS,
                              data={"csrf": csrf_of(signed_in, job_page)})
    driver.step()
    page = text(signed_in, response.headers["Location"])
    assert "hunter2" not in page and "k-secret" not in page
    assert "Basic &lt;redacted&gt; (user ops)" in page
    assert "curl -X POST" in page


def test_an_execution_page_shows_a_signed_request_without_its_secrets(
        signed_in: FlaskClient, collection: Tenant, receiver: Receiver, driver: NodeDriver,
        csrf_of: CsrfOf) -> None:
    secret, previous = "whsec_" + "c2VjcmV0" * 4, "whsec_" + "b2xkb2xk" * 4
    job = receiver.job(startTime="2099-01-01T00:00:00Z")
    job["action"]["request"]["authentication"] = {  # type: ignore[index]
        "type": "signature", "secret": secret, "previousSecret": previous}
    assert collection.call("PUT", JOBS + "/signed", job).status_code == 201
    job_page = collection_page(collection, "/jobs/signed")
    response = signed_in.post(job_page + "/run", base_url=HTTPS,
                              data={"csrf": csrf_of(signed_in, job_page)})
    driver.step()
    [request] = receiver.requests
    page = text(signed_in, response.headers["Location"])
    assert secret[6:] not in page and previous[6:] not in page
    assert request.header("webhook-signature") not in page
    assert "webhook-signature: v1,&lt;redacted&gt;" in page
    assert "Standard Webhooks signature, secret redacted" in page


def test_the_engine_collections_and_certificates_pages_say_what_there_is(
        signed_in: FlaskClient, collection: Tenant, driver: NodeDriver) -> None:
    driver.begin()
    engine = text(signed_in, ui(collection, "/engine"))
    assert "<code>node-a</code>" in engine
    collections = text(signed_in, ui(collection, "/collections"))
    assert ">jc1</a>" in collections and "Standard" in collections
    certificates = text(signed_in, ui(collection, "/certificates"))
    assert collection.certificate.thumbprint in certificates and "first" in certificates


def test_the_calendar_counts_planned_runs_and_marks_the_days_of_a_dense_schedule(
        signed_in: FlaskClient, collection: Tenant) -> None:
    action = {"type": "http", "request": {"uri": "https://example.com/", "method": "GET"}}
    for job_id, frequency in (("hourly", "hour"), ("often", "minute")):
        assert collection.call("PUT", f"{JOBS}/{job_id}", {
            "startTime": "2026-03-02T00:00:00Z", "action": action,
            "recurrence": {"frequency": frequency, "interval": 1}}).status_code == 201
    hourly = text(signed_in, collection_page(collection, "/jobs/hourly"))
    assert "Tue 2026-03-03: 24 planned" in hourly
    often = text(signed_in, collection_page(collection, "/jobs/often"))
    assert "Mon 2026-03-02: 1440 planned" in often  # 2,000 counted: Monday's, then part of
    assert "Tue 2026-03-03: runs planned" in often  # Tuesday, whose count is not known
    assert "Tue 2026-03-31: runs planned" in often


def test_fire_lateness_is_read_again_once_it_is_fifteen_seconds_old(
        signed_in: FlaskClient, collection: Tenant, receiver: Receiver, driver: NodeDriver,
        clock: FrozenClock) -> None:
    assert collection.call("PUT", JOBS + "/tick", hourly(receiver, "/ok")).status_code == 201
    clock.advance(timedelta(hours=1))
    driver.step()
    assert "1 scheduled runs started" in text(signed_in, ui(collection))
    clock.advance(timedelta(hours=1))  # 14:00: the hour since 13:00 has two
    driver.step()
    assert "2 scheduled runs started" in text(signed_in, ui(collection))


def test_a_cron_job_page_says_its_expression_jitter_and_timeout(
        signed_in: FlaskClient, collection: Tenant) -> None:
    assert collection.call("PUT", JOBS + "/weekdays", {
        "action": {"type": "http", "request": {"uri": "https://example.com/", "method": "GET",
                                               "timeout": "PT5M"}},
        "recurrence": {"cron": "0 9 * * MON-FRI", "timeZone": "Europe/Berlin",
                       "jitter": "PT10M"}}).status_code == 201
    page = text(signed_in, collection_page(collection, "/jobs/weekdays"))
    assert "at 09:00 on Monday through Friday each up to 10 min later (Europe/Berlin)" in page
    assert "<dt>Timeout</dt><dd>5 min per attempt</dd>" in page
    table = page.split('class="upcoming"', 1)[1].split("</table>", 1)[0]
    shown = collection.call("GET", JOBS + "/weekdays/occurrences?$top=20").get_json()
    assert [moment.replace("Z", "") for moment in re.findall(
        r'<time datetime="([^"]+)"', table)] == [moment.replace("Z", "") for moment in shown]


def test_a_job_disabled_until_a_time_from_its_page_says_so_on_the_page_and_the_list(
        signed_in: FlaskClient, collection: Tenant, csrf_of: CsrfOf) -> None:
    job_page = collection_page(collection, "/jobs/j1")
    token = csrf_of(signed_in, job_page)
    past = signed_in.post(job_page + "/state", base_url=HTTPS, data={
        "csrf": token, "state": "disabled", "until": "2026-03-01T11:00"})
    assert past.status_code == 400
    assert "until: must be in the future" in past.get_data(as_text=True)
    assert collection.call("GET", JOBS + "/j1").get_json()["state"] == "enabled"
    paused = signed_in.post(job_page + "/state", base_url=HTTPS, data={
        "csrf": token, "state": "disabled", "until": "2026-03-02T09:30",
        "note": "vendor window"})
    assert paused.status_code == 303
    document = collection.call("GET", JOBS + "/j1").get_json()
    assert (document["state"], document["disabledUntil"], document["stateNote"]) == (
        "disabled", "2026-03-02T09:30:00Z", "vendor window")
    page = text(signed_in, job_page)
    words = page.split('id="state-words">', 1)[1].split("</p>", 1)[0]
    assert "This job is disabled until 2026-03-02 09:30:00 UTC+00:00 (in 21 h 30 min)" in words
    assert 'name="until" step="1" value="2026-03-02T09:30:00"' in page
    listing = text(signed_in, collection_page(collection, "/jobs"))
    row = listing.split('data-job="j1"', 1)[1].split("</tr>", 1)[0]
    assert "disabled until 2026-03-02 09:30:00 UTC+00:00" in row
    # Enabling from the same form reads no time, and the job waits for none after it.
    enabled = signed_in.post(job_page + "/state", base_url=HTTPS, data={
        "csrf": token, "state": "enabled", "until": "2026-03-02T09:30:00"})
    assert enabled.status_code == 303
    assert "disabledUntil" not in collection.call("GET", JOBS + "/j1").get_json()
    assert "disabled until" not in text(signed_in, collection_page(collection, "/jobs"))
