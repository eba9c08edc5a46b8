"""What `scheduler status` makes of the listings it reads: which jobs are failing, faulted,
late or paused, since when, and how few pages it reads to know."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from scheduler.client import render
from scheduler.client.status import (
    Listing,
    Problem,
    failure_streaks,
    job_problems,
    newest_first,
    paused_problems,
)

NOW = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
MINUTE = timedelta(minutes=1)


def execution(job_id: str | None, minute: int, status: str, message: str = "") -> dict[str, Any]:
    """An execution of `job_id` due `minute` minutes after 11:00, ended a second later."""
    due = NOW - timedelta(hours=1) + minute * MINUTE
    return {"id": f"{minute:032x}", "jobId": job_id, "status": status, "message": message,
            "scheduledTime": due.isoformat().replace("+00:00", "Z"),
            "endTime": (due + timedelta(seconds=1)).isoformat().replace("+00:00", "Z")}


class Pages:
    """A listing served a page at a time, counting the pages asked for."""

    def __init__(self, items: list[dict[str, Any]], size: int) -> None:
        self.items = sorted(items, key=lambda item: item["scheduledTime"], reverse=True)
        self.size = size
        self.asked = 0

    def __iter__(self) -> Iterator[list[Any]]:
        for start in range(0, len(self.items) + 1, self.size):
            self.asked += 1
            page = self.items[start:start + self.size]
            yield page
            if len(page) < self.size:
                return


def streaks(failed: Pages, completed: Pages, candidates: set[str]) -> dict[str, Any]:
    """The streaks failure_streaks finds: job -> (count, complete, since)."""
    found = failure_streaks(Listing(iter(failed)), Listing(iter(completed)), candidates)
    return {key: (streak.count, streak.complete, streak.since) for key, streak in found.items()}


def test_a_job_whose_newest_finished_execution_failed_is_failing_since_its_first_failure(
        ) -> None:
    failed = Pages([execution("a", m, "failed") for m in (10, 20, 30)]
                   + [execution("b", 15, "failed")], size=10)
    completed = Pages([execution("a", 5, "completed"), execution("b", 25, "completed")],
                      size=10)
    found = streaks(failed, completed, {"a", "b"})
    assert found == {"a": (3, True, execution("a", 10, "failed")["endTime"])}


def test_a_job_that_never_completed_is_failing_since_its_oldest_failure() -> None:
    failed = Pages([execution("a", m, "failed") for m in (1, 2)], size=10)
    assert streaks(failed, Pages([], size=10), {"a"}) == {
        "a": (2, True, execution("a", 1, "failed")["endTime"])}


def test_job_ids_are_matched_in_any_letter_case() -> None:
    failed = Pages([execution("Nightly", 1, "failed")], size=10)
    assert set(streaks(failed, Pages([], size=10), {"nightly"})) == {"nightly"}


def test_only_the_pages_the_answer_needs_are_read() -> None:
    """The newest failure of each job that ever failed is on the first page, and so is a
    completed run newer than it: one page of each is enough, however long the listings."""
    failed = Pages([execution("a", m, "failed") for m in range(0, 60)], size=5)
    completed = Pages([execution("a", 59 + m, "completed") for m in range(1, 40)]
                      + [execution("b", 1, "completed")], size=5)
    assert streaks(failed, completed, {"a"}) == {}
    assert (failed.asked, completed.asked) == (1, 1)


def test_no_listing_is_read_past_the_jobs_that_ever_failed() -> None:
    failed = Pages([execution("a", 1, "failed")], size=5)
    completed = Pages([execution("b", m, "completed") for m in range(2, 50)], size=5)
    assert streaks(failed, completed, set()) == {}
    assert completed.asked == 0


def test_a_long_streak_is_counted_as_far_as_its_pages_go() -> None:
    failed = Pages([execution("a", m, "failed") for m in range(0, 59)], size=2)
    found = streaks(failed, Pages([], size=2), {"a"})
    count, complete, _since = found["a"]
    assert not complete and count == 12  # the first page, then 5 more
    problem = job_problems("cs", "jc", [{"id": "a", "state": "enabled"}],
                           failure_streaks(Listing(iter(failed)), Listing(iter(Pages([], 2))),
                                           {"a"}), True, NOW, MINUTE)[0]
    assert problem.message.startswith("12+ failures in a row; last: ")


def test_faulted_comes_before_failing_and_late_is_only_of_started_collections() -> None:
    failed = Pages([execution("broken", 1, "failed", "boom"),
                    execution("flaky", 2, "failed", "500")], size=10)
    found = failure_streaks(Listing(iter(failed)), Listing(iter(Pages([], 10))),
                            {"broken", "flaky"})
    past = (NOW - 5 * MINUTE).isoformat().replace("+00:00", "Z")
    jobs = [{"id": "broken", "state": "faulted", "stateDetails": "cannot run"},
            {"id": "flaky", "state": "enabled"},
            {"id": "stuck", "state": "enabled", "status": {"nextExecutionTime": past}},
            {"id": "off", "state": "disabled", "status": {"nextExecutionTime": past}}]
    kinds = {p.job: (p.kind, p.message) for p in job_problems("cs", "jc", jobs, found, True,
                                                               NOW, MINUTE)}
    assert kinds == {"broken": ("faulted", "cannot run"),
                     "flaky": ("failing", "1 failure; last: 500"),
                     "stuck": ("late", "was due 5 min ago and has not run")}
    suspended = job_problems("cs", "jc", jobs, found, False, NOW, MINUTE)
    assert {p.job for p in suspended} == {"broken", "flaky"}
    assert job_problems("cs", "jc", jobs[2:3], {}, True, NOW, 10 * MINUTE) == []


def test_a_paused_execution_says_where_it_waits_and_since_when() -> None:
    manual = {"id": "e1", "jobId": "release", "status": "paused", "startTime": "x",
              "steps": [{"name": "build", "status": "completed",
                         "endTime": "2030-01-01T11:00:00Z"},
                        {"name": "deploy", "status": "waiting"}]}
    failed = {"id": "e2", "jobId": None, "status": "paused",
              "steps": [{"name": "copy", "status": "paused", "message": "disk full",
                         "endTime": "2030-01-01T11:30:00Z"}]}
    first, second = paused_problems("cs", "jc", [manual, failed])
    assert (first.since, first.job, first.execution) == ("2030-01-01T11:00:00Z", "release",
                                                         "e1")
    assert first.message == "execution e1: manual step deploy waits for approval; resume " \
                            "or cancel it"
    assert second.message == "execution e2 (inline): step copy failed (disk full); resume " \
                             "or cancel it"


def test_problems_are_newest_first_with_suspended_collections_last() -> None:
    def problem(kind: str, since: str | None) -> Problem:
        return Problem(kind, since, "cs", "jc", None, None, kind)
    ordered = newest_first([problem("suspended", None),
                            problem("late", "2030-01-01T10:00:00Z"),
                            problem("failing", "2030-01-01T11:00:00.5Z"),
                            problem("paused", "2030-01-01T11:00:00Z")])
    assert [p.kind for p in ordered] == ["failing", "paused", "late", "suspended"]


def test_every_problem_has_the_same_keys_and_a_line_of_its_own() -> None:
    document = Problem("late", "2030-01-01T10:00:00Z", "cs", "jc", "ping", None,
                       "was due 2 h ago and has not run").document()
    assert set(document) == {"kind", "since", "cloudService", "collection", "job",
                             "execution", "message", "failures"}
    lines = render.problems_table([document]).splitlines()
    assert lines[0].split() == ["KIND", "SINCE", "WHERE", "MESSAGE"]
    assert lines[1].split()[:3] == ["late", "2030-01-01T10:00:00Z", "cs/jc/ping"]
    assert render.problems_table([]) == "Nothing needs attention."
