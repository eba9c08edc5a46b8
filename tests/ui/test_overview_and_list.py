"""The overview's sections and the jobs list's marks and cells, over what the engine really
did on the fake clock: faulted, late, missed, failing, running, completed and disabled jobs."""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

from flask.testing import FlaskClient

from scheduler.clock import FrozenClock
from tests.engine.harness import NodeDriver, Receiver
from tests.support import JOBS, Tenant
from tests.ui.markup import collection_ui, page, ui

NO_RETRY = {"retryType": "none"}


def once(receiver: Receiver, path: str, at: str) -> dict[str, Any]:
    """A one-shot job POSTing to the receiver's `path` at `at`, without retries."""
    job = receiver.job(path, startTime=at)
    job["action"]["retryPolicy"] = NO_RETRY
    return job


def put(collection: Tenant, job_id: str, job: dict[str, Any]) -> None:
    """Make a job in cs1/jc1 through the API."""
    response = collection.call("PUT", f"{JOBS}/{job_id}", job)
    assert response.status_code == 201, response.data


def test_the_overview_lists_faulted_late_and_missed_jobs_and_the_nodes_heartbeats(
        signed_in: FlaskClient, collection: Tenant, receiver: Receiver, driver: NodeDriver,
        clock: FrozenClock) -> None:
    receiver.answers["/broken"] = (500, {}, b"no")
    put(collection, "broken", once(receiver, "/broken", "2026-03-01T12:00:10Z"))
    put(collection, "often", receiver.minutely(path="/broken"))
    clock.advance(timedelta(seconds=10))
    driver.step()  # 12:00:10: `broken` fails for good, and has no run left: faulted
    clock.advance(timedelta(minutes=4))
    driver.step()  # 12:04:10: `often` missed 12:01 to 12:03, and its 12:04 run starts
    clock.advance(timedelta(seconds=1))
    driver.step()  # its failure is recorded
    put(collection, "late", once(receiver, "/ok", "2026-03-01T12:04:20Z"))
    clock.advance(timedelta(seconds=79))  # 12:05:30, no engine since 12:04:11

    overview = page(signed_in, ui(collection.subscription_id))

    assert overview.one("title").text == "(1 failing) Overview · Scheduler"
    assert overview.one("p", class_="summary").text == (
        "4 jobs · 1 failing · 1 faulted · 1 late · 1 with missed runs in the last 24 h")
    assert [row[0] for row in overview.section("failing").rows()] == ["failing often jc1"]
    faulted = overview.section("faulted").find_all("li")
    assert [item.text for item in faulted] == [
        "faulted broken — its retries and error action are spent"]
    late = overview.section("late").find_all("li")
    assert [item.text for item in late] == ["late late was due 1 min 10 s ago and has not started."]
    missed = overview.section("missed").find_all("li")
    assert [item.text for item in missed] == ["often: 3 missed"]
    nodes = overview.section("nodes").find_all("li")
    assert [item.text for item in nodes] == [
        "faulted node-a: last heartbeat 1 min 19 s ago (dead)"]


def test_the_jobs_list_marks_each_job_and_says_its_next_and_last_run(
        signed_in: FlaskClient, collection: Tenant, receiver: Receiver, driver: NodeDriver,
        clock: FrozenClock) -> None:
    receiver.answers["/broken"] = (500, {}, b"no")
    receiver.answers["/created"] = (201, {}, b"made")
    put(collection, "done", once(receiver, "/created", "2026-03-01T12:00:10Z"))
    put(collection, "broken", once(receiver, "/broken", "2026-03-01T12:00:10Z"))
    failing = receiver.job("/broken", recurrence={"frequency": "minute"})
    failing["action"]["retryPolicy"] = NO_RETRY
    put(collection, "failing", failing)
    put(collection, "paused", once(receiver, "/ok", "2099-01-01T00:00:00Z"))
    assert collection.call("PATCH", f"{JOBS}/paused", {"state": "disabled"}).status_code == 200
    put(collection, "daily", {
        "startTime": "2026-03-01T00:00:00Z",
        "action": {"type": "http", "request": {"uri": receiver.url("/ok"), "method": "GET"}},
        "recurrence": {"frequency": "day", "timeZone": "America/New_York",
                       "schedule": {"hours": [9], "minutes": [0]}}})
    # The targets answer 2.5 s after they are called.
    answered = threading.Event()
    receiver.holds.update({"/created": answered, "/broken": answered})
    clock.advance(timedelta(seconds=10))
    driver.run_pass()  # 12:00:10: the three calls are sent
    clock.advance(timedelta(milliseconds=2500))
    answered.set()
    driver.step()
    put(collection, "running", once(receiver, "/ok", "2026-03-01T12:00:30Z"))
    put(collection, "late", once(receiver, "/ok", "2026-03-01T12:00:40Z"))
    clock.advance(timedelta(seconds=15))
    driver.run_pass()  # 12:00:27.5: `running`'s call is readied for 12:00:30
    clock.advance(timedelta(seconds=75))  # 12:01:42.5, no engine since: `late` is late

    listing = page(signed_in, collection_ui(collection.subscription_id, "/jobs"))
    rows = listing.one("table", class_="jobs").find_all("tr", where=lambda row: "data-job"
                                                        in row.attrs)
    marks = {row.attrs["data-job"]: (row.classes, row.find_all("span", class_="mark")[0].text)
             for row in rows}
    assert marks == {
        "failing": (["failing"], "failing"), "broken": (["faulted"], "faulted"),
        "late": (["late"], "late"), "running": (["running"], "running"),
        "daily": (["ok"], "ok"), "j1": (["ok"], "ok"), "paused": (["disabled"], "disabled"),
        "done": (["completed"], "completed")}
    assert [row.attrs["data-job"] for row in rows] == [
        "failing", "broken", "late", "running", "daily", "j1", "paused", "done"]
    daily = listing.one("tr", data_job="daily").rows()[0]
    next_run = listing.one("tr", data_job="daily").find_all("td")[4]
    assert next_run.one("time").attrs == {"datetime": "2026-03-01T14:00:00Z",
                                          "title": "2026-03-01 14:00:00 UTC+00:00"}
    assert next_run.text == "in 1 h 58 min 2026-03-01 09:00:00 UTC-05:00"
    assert daily[3] == "every day at 09:00 (America/New_York)"
    done = listing.one("tr", data_job="done").find_all("td")
    assert done[5].text == "completed 2.5 s · HTTP 201"
    assert done[4].text == "—"
    assert listing.one("tr", data_job="failing").find_all("td")[5].text == \
        "failed 2.5 s · HTTP 500"
