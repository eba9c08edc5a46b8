"""A job's page over five days of a daily job the engine really ran: its counters, its recent
runs' columns, the calendar's completed, failed, missed and planned days, the duration bars,
and its changes."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import timedelta

from flask.testing import FlaskClient

from scheduler.clock import FrozenClock
from tests.engine.harness import NodeDriver, Receiver
from tests.support import JOBS, Tenant
from tests.ui.markup import Element, collection_ui, page, sign_in

CsrfOf = Callable[[FlaskClient, str], str]


def run_day(driver: NodeDriver, clock: FrozenClock, receiver: Receiver, late: timedelta,
            took: timedelta) -> None:
    """Run the daily job's call due at the clock's time `late` late; its target answers
    after `took`."""
    answered = receiver.holds["/daily"] = threading.Event()
    clock.advance(late)
    driver.run_pass()
    clock.advance(took)
    answered.set()
    driver.step()


def five_days(collection: Tenant, receiver: Receiver, driver: NodeDriver,
              clock: FrozenClock) -> None:
    """A job daily at 13:00 UTC from March 1: completed on the 1st, failed on the 2nd,
    missed on the 3rd and 4th, completed on the 5th; the clock at 2026-03-05 13:00:05."""
    job = receiver.job("/daily", startTime="2026-03-01T13:00:00Z",
                       recurrence={"frequency": "day"})
    job["action"]["retryPolicy"] = {"retryType": "none"}
    assert collection.call("PUT", f"{JOBS}/daily", job).status_code == 201
    clock.advance(timedelta(hours=1))  # 13:00 on the 1st
    run_day(driver, clock, receiver, timedelta(0), timedelta(seconds=1))
    clock.advance(timedelta(days=1, seconds=-1))  # 13:00 on the 2nd
    receiver.answers["/daily"] = (503, {}, b"busy")
    run_day(driver, clock, receiver, timedelta(0), timedelta(seconds=1))
    del receiver.answers["/daily"]
    clock.advance(timedelta(days=3, seconds=-1))  # 13:00 on the 5th; no engine since the 2nd
    run_day(driver, clock, receiver, timedelta(seconds=2), timedelta(seconds=3))


def day_cells(job_page: Element) -> dict[str, tuple[str, str]]:
    """The calendar's cells by day (`2026-03-05`): their kind and title."""
    cells = job_page.one("svg", class_="heatmap").find_all("rect")
    return {cell.text.split(": ", 1)[0].split()[1]: (cell.classes[1], cell.text)
            for cell in cells}


def test_a_job_page_shows_its_counters_runs_calendar_and_durations(
        signed_in: FlaskClient, collection: Tenant, receiver: Receiver, driver: NodeDriver,
        clock: FrozenClock) -> None:
    five_days(collection, receiver, driver, clock)
    sub = collection.subscription_id
    job_page = page(sign_in(signed_in, sub), collection_ui(sub, "/jobs/daily"))
    counters = job_page.one("dl", class_="counters")
    named = dict(zip([term.text for term in counters.find_all("dt")],
                     [value.text for value in counters.find_all("dd")], strict=True))
    status = collection.call("GET", f"{JOBS}/daily").get_json()["status"]
    assert (named["Runs"], named["Failures"], named["Faults"]) == (
        str(status["executionCount"]), str(status["failureCount"]),
        str(status["faultedCount"]))
    assert (named["Runs"], named["Failures"]) == ("3", "1")

    runs = job_page.one("table", class_="runs").rows()
    assert runs[0][1:] == ["schedule", "2026-03-05 13:00:00 UTC+00:00",
                           "2026-03-05 13:00:02 UTC+00:00", "2.0 s", "3.0 s", "1", "node-a",
                           runs[0][8]]
    assert runs[0][8].startswith("HTTP 200 · ")
    assert [row[0] for row in runs] == ["completed", "missed", "missed", "failed", "completed"]
    assert runs[3][8].startswith("HTTP 503 · ")

    days = day_cells(job_page)
    assert days["2026-03-01"] == ("completed", "Sun 2026-03-01: 1 completed")
    assert days["2026-03-02"] == ("failed", "Mon 2026-03-02: 1 failed")
    assert days["2026-03-03"] == ("missed", "Tue 2026-03-03: 1 missed")
    assert days["2026-03-04"] == ("missed", "Wed 2026-03-04: 1 missed")
    assert days["2026-03-05"] == ("completed", "Thu 2026-03-05: 1 completed")
    assert days["2026-03-06"] == ("planned", "Fri 2026-03-06: 1 planned")
    assert days["2026-04-04"] == ("planned", "Sat 2026-04-04: 1 planned")
    assert days["2026-02-28"][0] == "empty"
    assert [kind for kind, _ in days.values()].count("planned") == 30

    bars = job_page.one("svg", class_="durations").find_all("rect")
    assert [(bar.classes, bar.text) for bar in bars] == [
        (["bar", "completed"], "1.0 s · 2026-03-01 13:00:00 UTC+00:00"),
        (["bar", "failed"], "1.0 s · 2026-03-02 13:00:00 UTC+00:00"),
        (["bar", "completed"], "3.0 s · 2026-03-05 13:00:00 UTC+00:00")]
    assert [bar.attrs["height"] for bar in bars] == ["20", "20", "60"]
