"""`scheduler status`: the jobs of the subscription that need attention, newest problem first.

A job is *failing* when its newest finished execution failed (a canceled or missed one says
nothing of its target, so it is passed over), *faulted* when the service parked it, *late*
when it is enabled in a started collection and its next run is more than `--late-after`
seconds past; an execution is *paused* when a sequence waits at a step to be resumed or
canceled; a collection is *suspended*. Failing and faulted jobs make the exit code 1.

The requests: one listing of the collections, and for each collection its jobs, its paused
executions and, only when one of its jobs has ever failed, its failed executions and then its
completed ones, each newest first and read page by page only as far as the answer needs.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from scheduler.client import render
from scheduler.client.http import ApiClient
from scheduler.client.profile import Connection
from scheduler.client.runner import Output, Subcommands, leaf, not_negative
from scheduler.clock import SystemClock

LATE_AFTER_SECONDS = 60
# The pages of failed executions read past those that name every failing job, to count how
# many times in a row each has failed; past them a count is a floor, shown as `N+`.
MAX_STREAK_PAGES = 5
ALARMS = ("failing", "faulted")  # the kinds that make the exit code 1
EARLIEST = datetime.min.replace(tzinfo=UTC)


@dataclass(frozen=True)
class Problem:
    """One thing that needs attention, where it is, and since when."""

    kind: str
    since: str | None
    cloud_service: str
    collection: str
    job: str | None
    execution: str | None
    message: str
    failures: int | None = None  # failing and faulted: failed executions in a row

    def document(self) -> dict[str, Any]:
        """The problem as `--output json` prints it: the same keys every time."""
        return {"kind": self.kind, "since": self.since, "cloudService": self.cloud_service,
                "collection": self.collection, "job": self.job, "execution": self.execution,
                "message": self.message, "failures": self.failures}


def parse_time(value: Any) -> datetime | None:
    """A time the service wrote (ISO-8601, `Z`), or None when there is none to read."""
    if not isinstance(value, str) or not value:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def order_key(execution: Mapping[str, Any]) -> tuple[datetime, str]:
    """Where an execution stands among the others, newest last: as the service lists them
    (when they were made, which is when they were due, or started by hand)."""
    return (parse_time(execution.get("scheduledTime")) or EARLIEST, str(execution.get("id")))


def job_key(value: Any) -> str:
    """A job id as the service matches them: in any letter case."""
    return str(value).lower()


# --- reading a listing only as far as needed -----------------------------------------------

class Listing:
    """A listing of executions, newest first, read a page at a time when asked."""

    def __init__(self, pages: Iterator[list[Any]]) -> None:
        self._pages = pages
        self.items: list[Mapping[str, Any]] = []
        self.ended = False
        self.pages_read = 0

    def read_page(self) -> bool:
        """Read the next page; False once the listing has ended."""
        if self.ended:
            return False
        page = next(self._pages, None)
        if page is None:
            self.ended = True
            return False
        self.items.extend(item for item in page if isinstance(item, Mapping))
        self.pages_read += 1
        return True

    def oldest(self) -> tuple[datetime, str] | None:
        """The order key of the oldest execution read so far."""
        return order_key(self.items[-1]) if self.items else None

    def read_past(self, key: tuple[datetime, str]) -> bool:
        """Whether everything newer than `key` has been read."""
        oldest = self.oldest()
        return self.ended or (oldest is not None and oldest < key)


@dataclass
class Streak:
    """A job's failed executions since its last completed one, newest first."""

    failed: list[Mapping[str, Any]] = field(default_factory=list)
    complete: bool = True  # False: older failures of it may not have been read

    @property
    def count(self) -> int:
        """How many executions in a row failed (a floor unless complete)."""
        return len(self.failed)

    @property
    def since(self) -> str | None:
        """When the first failure of the streak ended."""
        first = self.failed[-1]
        return first.get("endTime") or first.get("startTime") or first.get("scheduledTime")

    @property
    def counted(self) -> str:
        """`3 failures in a row`, `1 failure`, `5+ failures in a row`."""
        if self.count == 1 and self.complete:
            return "1 failure"
        return f"{self.count}{'' if self.complete else '+'} failures in a row"


def newest_by_job(items: Sequence[Mapping[str, Any]]) -> dict[str, Mapping[str, Any]]:
    """The newest execution of each job among `items` (newest first); inline runs left out."""
    newest: dict[str, Mapping[str, Any]] = {}
    for item in items:
        if item.get("jobId") is not None:
            newest.setdefault(job_key(item["jobId"]), item)
    return newest


def failure_streaks(failed: Listing, completed: Listing,
                    candidates: set[str]) -> dict[str, Streak]:
    """The streaks of the jobs among `candidates` (those that ever failed) whose newest
    finished execution failed, reading the two listings no further than that needs."""
    while not candidates <= set(newest_by_job(failed.items)) and failed.read_page():
        pass
    newest_failed = {key: order_key(item) for key, item in newest_by_job(failed.items).items()
                     if key in candidates}
    if not newest_failed:
        return {}
    while not all(key in newest_by_job(completed.items) or completed.read_past(failed_key)
                  for key, failed_key in newest_failed.items()) and completed.read_page():
        pass
    last_completed = {key: order_key(item)
                      for key, item in newest_by_job(completed.items).items()}
    failing = {key: last_completed.get(key) for key, failed_key in newest_failed.items()
               if key not in last_completed or failed_key > last_completed[key]}
    return read_streaks(failed, failing)


def read_streaks(failed: Listing, failing: Mapping[str, tuple[datetime, str] | None]
                 ) -> dict[str, Streak]:
    """The streaks of the failing jobs, each back to its last completed execution (its order
    key; None when it has none), reading up to MAX_STREAK_PAGES more pages of failures."""
    def read_back(key: str) -> bool:
        last_success = failing[key]
        return failed.ended if last_success is None else failed.read_past(last_success)
    extra = 0
    while not all(read_back(key) for key in failing) and extra < MAX_STREAK_PAGES:
        if not failed.read_page():
            break
        extra += 1
    streaks = {key: Streak(complete=read_back(key)) for key in failing}
    for item in failed.items:
        key = job_key(item.get("jobId"))
        if key in streaks:
            last_success = failing[key]
            if last_success is None or order_key(item) > last_success:
                streaks[key].failed.append(item)
    return streaks


# --- what needs attention --------------------------------------------------------------------

def job_problems(cloud_service: str, collection: str, jobs: Sequence[Mapping[str, Any]],
                 streaks: Mapping[str, Streak], started: bool, now: datetime,
                 late_after: timedelta) -> list[Problem]:
    """The collection's faulted, failing and late jobs: one problem per job at most, faulted
    before failing (a faulted job failed too), failing before late."""
    problems = []
    for job in jobs:
        job_id = str(job.get("id"))
        streak = streaks.get(job_key(job_id))
        status = job.get("status") or {}
        place = (cloud_service, collection, job_id)
        if job.get("state") == "faulted":
            problems.append(faulted(place, job, streak))
        elif streak is not None:
            problems.append(failing(place, streak))
        elif started and job.get("state") == "enabled":
            due = parse_time(status.get("nextExecutionTime"))
            if due is not None and now - due > late_after:
                problems.append(Problem("late", status["nextExecutionTime"], *place, None,
                                        f"was due {ago(now - due)} ago and has not run"))
    return problems


def faulted(place: tuple[str, str, str], job: Mapping[str, Any],
            streak: Streak | None) -> Problem:
    """A job the service parked: its state details say why."""
    newest = streak.failed[0] if streak else None
    since = (newest.get("endTime") if newest else None) or \
        (job.get("status") or {}).get("lastExecutionTime")
    details = job.get("stateDetails") or (newest or {}).get("message") or \
        "the job is faulted and fires no more"
    return Problem("faulted", since, *place, str(newest["id"]) if newest else None,
                   str(details), streak.count if streak else None)


def failing(place: tuple[str, str, str], streak: Streak) -> Problem:
    """A job whose newest finished execution failed: how often in a row, and why."""
    newest = streak.failed[0]
    message = newest.get("message") or f"ended with status {newest.get('status')}"
    return Problem("failing", streak.since, *place, str(newest.get("id")),
                   f"{streak.counted}; last: {message}", streak.count)


def paused_problems(cloud_service: str, collection: str,
                    paused: Sequence[Mapping[str, Any]]) -> list[Problem]:
    """The collection's executions that wait at a step to be resumed or canceled."""
    problems = []
    for execution in paused:
        step = next((s for s in execution.get("steps") or []
                     if isinstance(s, Mapping) and s.get("status") in ("paused", "waiting")),
                    {})
        what = (f"manual step {step.get('name')} waits for approval"
                if step.get("status") == "waiting" else
                f"step {step.get('name')} failed" + (f" ({step['message']})"
                                                     if step.get("message") else ""))
        problems.append(Problem(
            "paused", paused_since(execution), cloud_service, collection,
            execution.get("jobId"), str(execution.get("id")),
            f"execution {execution.get('id')}{'' if execution.get('jobId') else ' (inline)'}: "
            f"{what}; resume or cancel it"))
    return problems


def paused_since(execution: Mapping[str, Any]) -> str | None:
    """When a paused execution stopped: its last step's end, or its start."""
    ended = [s.get("endTime") for s in execution.get("steps") or []
             if isinstance(s, Mapping) and s.get("endTime")]
    return max(ended, key=lambda t: parse_time(t) or EARLIEST) if ended else \
        execution.get("startTime") or execution.get("scheduledTime")


def ago(elapsed: timedelta) -> str:
    """`45 s`, `3 min`, `2 h`, `4 days`: a lateness in the unit people would say it in."""
    seconds = int(elapsed.total_seconds())
    for unit, size in (("days", 86400), ("h", 3600), ("min", 60)):
        if seconds >= 2 * size:
            return f"{seconds // size} {unit}"
    return f"{seconds} s"


def newest_first(problems: list[Problem]) -> list[Problem]:
    """Problems newest first; those without a time (suspended collections) last."""
    return sorted(problems, key=lambda p: (p.since is not None,
                                           parse_time(p.since) or EARLIEST), reverse=True)


# --- asking the service ------------------------------------------------------------------------

def collection_problems(api: ApiClient, collection: Mapping[str, Any], now: datetime,
                        late_after: timedelta) -> list[Problem]:
    """What needs attention in one collection."""
    cloud_service, name = str(collection["cloudService"]), str(collection["name"])
    suspended = str(collection.get("state") or "").lower() == "suspended"
    problems = [Problem("suspended", None, cloud_service, name, None, None,
                        "the collection is suspended: none of its jobs fires")] if suspended \
        else []
    jobs = api.list_jobs(cloud_service, name)
    candidates = {job_key(job.get("id")) for job in jobs
                  if ((job.get("status") or {}).get("failureCount") or 0) > 0}
    streaks = failure_streaks(Listing(api.execution_pages(cloud_service, name, "failed")),
                              Listing(api.execution_pages(cloud_service, name, "completed")),
                              candidates) if candidates else {}
    problems += job_problems(cloud_service, name, jobs, streaks, not suspended, now,
                             late_after)
    problems += paused_problems(cloud_service, name,
                                api.list_executions(cloud_service, name, status="paused"))
    return problems


def status(api: ApiClient, connection: Connection, args: argparse.Namespace) -> Output:
    """`status`: every problem of the subscription (of the cloud service or collection the
    flags name), newest first; exit 1 when a job is failing or faulted."""
    collections = [c for c in api.list_collections(args.cloud_service)
                   if args.collection is None or str(c.get("name")).lower()
                   == args.collection.lower()]
    # The service's clock decides what is late, not this machine's.
    now = api.service_time() or SystemClock().now()
    late_after = timedelta(seconds=args.late_after)
    problems = newest_first([problem for collection in collections
                             for problem in collection_problems(api, collection, now,
                                                                late_after)])
    alarms = [p for p in problems if p.kind in ALARMS]
    failure = None
    if alarms:
        counts = {kind: sum(p.kind == kind for p in alarms) for kind in ALARMS}
        failure = ", ".join(f"{n} job{'s' * (n != 1)} {kind}"
                            for kind, n in counts.items() if n)
    return Output([p.document() for p in problems],
                  render.problems_table([p.document() for p in problems]), failure)


def add_status_command(commands: Subcommands, common: argparse.ArgumentParser) -> None:
    """`scheduler status`."""
    what = ("the jobs that need attention across the subscription, newest problem first: "
            "failing, faulted, late, paused at a step, in a suspended collection; exit 1 "
            "when a job is failing or faulted. --cloud-service and --collection narrow it "
            "(a profile's defaults do not)")
    parser = leaf(commands, "status", status, what, common, job_id=False)
    parser.add_argument("--late-after", type=not_negative, default=LATE_AFTER_SECONDS,
                        metavar="SECONDS", help="a job whose next run is this far past is "
                        f"late (default {LATE_AFTER_SECONDS})")
