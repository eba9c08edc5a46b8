"""Benchmark of the dashboard's pages, beside the API's job list and job, in one process.

    .venv/bin/python bench/ui.py [--jobs 1000] [--occurrences 100] [--requests 30]
        [--more-jobs N] [--no-profile] [--results FILE]

One run makes a temporary home and a fresh SQLite database holding one collection of --jobs
jobs recurring every minute, and gives them a history through the engine's entry points on a
simulated clock (`Engine.tick`, `finished`, `record`, `claim_executions`, `cancel`): about
--occurrences executions a job, most completed, some failed after two retries, some missed
(the engine skips ahead over occurrences now and then), some canceled. A few jobs fail every
time, so that the overview has failing streaks to show; a few are then disabled through the
API with a note, so that the audit has changes to list.

It then signs in to the dashboard as the home's admin certificate and times each page through
the Flask app in-process (WSGI, no TLS, no sockets: the time the server spends), --requests
times each after one warm-up, and beside them the API's list of the collection's jobs
(`$top=100`, and all of them) and `GET` of one job, the same way in the same run. Pages whose
median is over 100 ms are profiled (cProfile) unless --no-profile. With --more-jobs N, the
collection then gets N more jobs (copies of one, far in the future, with no history) and the
job lists are timed again: the first page, the last, and the list of every collection. It
prints a table, writes bench/results-ui.json (or --results) and removes the home, also on
error.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import random
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as `python bench/ui.py`: make `bench` importable
    sys.path.insert(0, str(ROOT))

from flask import Flask  # noqa: E402
from werkzeug.datastructures import Headers  # noqa: E402
from werkzeug.test import EnvironBuilder  # noqa: E402

from bench.harness import (  # noqa: E402
    BenchError,
    code_version,
    machine_info,
    percentile,
    results_argument,
    shown,
    write_results,
)
from bench.sites import (  # noqa: E402
    CLOUD_SERVICE,
    COLLECTION,
    Backend,
    Site,
    bench_home,
    copy_jobs,
    create_jobs,
    execution_statuses,
    history_count,
    http_document,
    now_utc,
    reschedule,
    settle,
)
from scheduler.actions.base import Outcome  # noqa: E402
from scheduler.actions.http import HttpCaller  # noqa: E402
from scheduler.actions.registry import standard_actions  # noqa: E402
from scheduler.api.auth import PEER_CERT_ENVIRON  # noqa: E402
from scheduler.app import create_app  # noqa: E402
from scheduler.clock import FrozenClock, SystemClock  # noqa: E402
from scheduler.engine.leased import Claimed  # noqa: E402
from scheduler.engine.node import Engine  # noqa: E402
from scheduler.engine.options import engine_options  # noqa: E402
from scheduler.security import pki  # noqa: E402
from scheduler.security.secrets import SecretBox  # noqa: E402
from scheduler.settings import EngineSettings, Settings  # noqa: E402
from scheduler.ui.pages import PAGE_SIZE  # noqa: E402

RESULTS_FILE = ROOT / "bench" / "results-ui.json"
HTTPS = "https://localhost"
COOKIE = "__Host-scheduler-ui"  # scheduler.ui.blueprint.COOKIE
SIGN_IN_COOKIE = "__Host-scheduler-sign-in"  # scheduler.ui.signin.SIGN_IN_COOKIE
API_VERSION = "api-version=2014-04-01"
NODE = "bench-ui"
PREFIX = "ui-"
# Nothing listens there: no call is made, the outcome is given.
UNCALLED_URL = "http://127.0.0.1:9/ui"
MINUTE = timedelta(minutes=1)
RETRY_AFTER = timedelta(seconds=20)
# The dashboard is looked at this long after the last tick: before the next fire time, so
# that no job is late (an engine that ran would have fired it).
LOOK_AFTER = timedelta(seconds=30)
RETRY_POLICY = {"retryType": "fixed", "retryInterval": "PT20S", "retryCount": 2}
# Of the attempts of the other jobs: how many fail, and of the new executions, how many are
# canceled while they run.
FAIL_SHARE, CANCEL_SHARE = 0.10, 0.03
# Every ALWAYS_FAILING-th job fails every attempt; DISABLED of the others are disabled.
ALWAYS_FAILING, DISABLED = 25, 20
# Every SKIP_EVERY-th tick comes SKIPPED occurrences late: those are missed.
SKIP_EVERY, SKIPPED = 10, 2
SLOW_MS = 100.0
PROFILE_REQUESTS = 5
PROFILE_LINES = 25
SUCCESS = Outcome(True, "Http Action - Response from host '127.0.0.1': 'OK' Response "
                  "Headers: Content-Length: 0", {"statusCode": 200, "reason": "OK"})
FAILURE = Outcome(False, "Http Action - Response from host '127.0.0.1': "
                  "'InternalServerError' Response Headers: Content-Length: 0",
                  {"statusCode": 500, "reason": "Internal Server Error"})


# --- a history through the engine ----------------------------------------------------------

@dataclass
class History:
    """What the engine made: the simulated end of the history, a failing job and one of its
    executions that was retried, and how long the making took."""

    end: datetime
    failing_job: str
    retried_execution: str
    jobs: int
    seconds: float


def job_number(claimed: Claimed) -> int:
    """The bench job an execution belongs to (`ui-0000042` -> 42)."""
    return int(claimed.version.job_id.removeprefix(PREFIX))


def always_fails(number: int) -> bool:
    """Whether the job numbered `number` fails every attempt."""
    return number % ALWAYS_FAILING == 1


class HistoryMaker:
    """Drives the engine over a simulated clock, giving each attempt its outcome."""

    def __init__(self, site: Site, box: SecretBox, jobs: int, seed: int = 7) -> None:
        actions = standard_actions(HttpCaller(allow_private_networks=True))
        options = replace(engine_options(EngineSettings(), sqlite=site.db.is_sqlite),
                          batch=jobs)
        self.engine = Engine(site.db, box, SystemClock(), NODE, actions, options)
        self.jobs, self.rng = jobs, random.Random(seed)
        self.retried: dict[int, str] = {}  # a retried execution of each job

    def outcome(self, claimed: Claimed) -> Outcome:
        """A failure for the always-failing jobs and FAIL_SHARE of the others' attempts."""
        if always_fails(job_number(claimed)) or self.rng.random() < FAIL_SHARE:
            return FAILURE
        return SUCCESS

    def attempt(self, claimed: list[Claimed], now: datetime) -> None:
        """Give claimed executions their outcomes at `now` and record them."""
        ended = now + timedelta(milliseconds=self.rng.randrange(50, 900))
        self.engine.record([self.engine.finished(one, self.outcome(one), now, ended)
                            for one in claimed])

    def step(self, now: datetime) -> None:
        """One tick at `now`, some runs canceled, the others attempted; then their retries."""
        claimed = self.engine.tick(now, now, self.jobs, surely_due=True).claimed
        if len(claimed) != self.jobs:
            raise BenchError(f"the tick at {now} leased {len(claimed)} of {self.jobs}")
        canceled = [one for one in claimed if self.rng.random() < CANCEL_SHARE]
        self.engine.cancel([one.execution_id for one in canceled], now)
        gone = {one.execution_id for one in canceled}
        self.attempt([one for one in claimed if one.execution_id not in gone], now)
        for retry in (1, 2):
            later = now + retry * (RETRY_AFTER + timedelta(seconds=2))
            again = self.engine.claim_executions(later)
            for one in again:
                self.retried.setdefault(job_number(one), one.execution_id)
            self.attempt(again, later)

    def run(self, start: datetime, occurrences: int) -> datetime:
        """Tick through `occurrences` fire times from `start`, every SKIP_EVERY-th tick
        SKIPPED occurrences late; the time of the last tick."""
        self.engine.heartbeat(start, starting=True)
        index, ticks, now = 0, 0, start
        while index < occurrences:
            late = SKIPPED if ticks % SKIP_EVERY == SKIP_EVERY - 1 else 0
            index = min(occurrences - 1, index + late)
            # A few seconds late, so that the lateness the overview shows is not all zero.
            now = start + index * MINUTE + timedelta(seconds=self.rng.randrange(0, 5))
            self.step(now)
            index += 1
            ticks += 1
        self.engine.heartbeat(now + LOOK_AFTER)
        return now


def make_history(site: Site, box: SecretBox, settings: Settings, jobs: int,
                 occurrences: int) -> History:
    """`jobs` jobs of one collection, each with about `occurrences` executions."""
    document = http_document(UNCALLED_URL, now_utc() + timedelta(days=1),
                             {"frequency": "minute", "interval": 1})
    document["action"]["retryPolicy"] = RETRY_POLICY
    create_jobs(site, document, jobs, PREFIX, box, settings)
    document["startTime"] = (now_utc() + timedelta(days=2)).strftime("%Y-%m-%dT%H:%M:00Z")
    start = reschedule(site, document)
    maker = HistoryMaker(site, box, jobs)
    began = time.monotonic()
    end = maker.run(start, occurrences)
    seconds = time.monotonic() - began
    settle(site)
    failing = next(number for number in maker.retried if always_fails(number))
    return History(end=end + LOOK_AFTER, failing_job=f"{PREFIX}{failing:07d}",
                   retried_execution=maker.retried[failing], jobs=jobs,
                   seconds=seconds)


# --- requests through the app, in-process --------------------------------------------------

@dataclass(frozen=True)
class Caller:
    """Calls the app in-process as a browser or client over HTTPS would, holding the
    admin certificate (and the cookies it was given: the sign-in form's, then the
    dashboard's session)."""

    app: Flask
    certificate: bytes
    cookies: str = ""

    def environ(self, path: str, method: str = "GET", data: dict[str, str] | None = None
                ) -> dict[str, Any]:
        """The WSGI environment of one request."""
        headers = {"Cookie": self.cookies} if self.cookies else {}
        builder = EnvironBuilder(path=path, base_url=HTTPS, method=method,
                                 headers=list(headers.items()),
                                 data=data, environ_base={PEER_CERT_ENVIRON: self.certificate})
        try:
            return builder.get_environ()
        finally:
            builder.close()

    def call(self, environ: dict[str, Any]) -> tuple[int, Headers, bytes]:
        """Run one request through the app: its status, headers and body."""
        answer: dict[str, Any] = {}

        def start_response(status: str, headers: list[tuple[str, str]],
                           exc_info: Any = None) -> Callable[[bytes], object]:
            answer["status"], answer["headers"] = int(status.split()[0]), Headers(headers)
            return lambda _: None

        chunks = self.app(environ, start_response)
        try:
            body = b"".join(chunks)
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()
        return answer["status"], answer["headers"], body

    def expect(self, status: int, path: str, method: str = "GET",
               data: dict[str, str] | None = None) -> tuple[Headers, bytes]:
        """One request that must answer `status`."""
        got, headers, body = self.call(self.environ(path, method, data))
        if got != status:
            raise BenchError(f"{method} {path} answered {got}, expected {status}: "
                             f"{body[:500]!r}")
        return headers, body


def signed_in(app: Flask, settings: Settings, subscription: str) -> Caller:
    """A caller holding the admin certificate, signed in to the dashboard."""
    certificate = pki.der_bytes(pki.load_certificate(
        settings.path(settings.security.admin_cert_file).read_bytes()))
    caller = Caller(app, certificate)
    headers, page = caller.expect(200, "/ui/sign-in")
    form = replace(caller, cookies=_cookie(headers, SIGN_IN_COOKIE))
    token = page.decode().split('name="csrf" value="', 1)[1].split('"', 1)[0]
    headers, _ = form.expect(303, "/ui/sign-in/certificate", "POST",
                             {"subscription": subscription, "csrf": token})
    return replace(caller, cookies=_cookie(headers, COOKIE))


def _cookie(headers: Headers, name: str) -> str:
    """`name=value` of the cookie an answer sets."""
    for cookie in headers.getlist("Set-Cookie"):
        if cookie.startswith(f"{name}="):
            return cookie.split(";", 1)[0]
    raise BenchError(f"signing in set no cookie {name}: {headers.getlist('Set-Cookie')!r}")


def disable_jobs(caller: Caller, jobs_path: str, numbers: list[int]) -> None:
    """Disable jobs through the API with a note, as an operator would."""
    body = b'{"state": "disabled", "stateNote": "Paused while the target is moved"}'
    for number in numbers:
        path = f"{jobs_path}/{PREFIX}{number:07d}?{API_VERSION}"
        builder = EnvironBuilder(path=path, base_url=HTTPS, method="PATCH", data=body,
                                 content_type="application/json",
                                 environ_base={PEER_CERT_ENVIRON: caller.certificate})
        try:
            status, _, answer = caller.call(builder.get_environ())
        finally:
            builder.close()
        if status != 200:
            raise BenchError(f"PATCH {path} answered {status}: {answer[:300]!r}")


# --- measuring ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Target:
    """One page or API call to time."""

    name: str
    kind: str  # "page" or "api"
    path: str


def targets(subscription: str, history: History) -> list[Target]:
    """The dashboard's pages and the API's calls the run times."""
    collection = (f"/{subscription}/cloudservices/{CLOUD_SERVICE}/resources/scheduler/~/"
                  f"jobcollections/{COLLECTION}")
    job = f"{collection}/jobs/{history.failing_job}"
    ui = f"/ui{collection}"
    return [
        Target("overview", "page", f"/ui/{subscription}/"),
        Target("jobs of all collections", "page", f"/ui/{subscription}/jobs"),
        Target("jobs of the collection, page 1", "page", f"{ui}/jobs"),
        Target("jobs of the collection, failing", "page", f"{ui}/jobs?status=failing"),
        Target("one job", "page", f"/ui{job}"),
        Target("one execution", "page", f"/ui{job}/executions/{history.retried_execution}"),
        Target("audit", "page", f"/ui/{subscription}/audit"),
        Target("engine", "page", f"/ui/{subscription}/engine"),
        Target("collections", "page", f"/ui/{subscription}/collections"),
        Target("certificates", "page", f"/ui/{subscription}/certificates"),
        Target("API GET jobs $top=100", "api", f"{collection}/jobs?{API_VERSION}&$top=100"),
        Target("API GET jobs, all", "api", f"{collection}/jobs?{API_VERSION}"),
        Target("API GET job", "api", f"{job}?{API_VERSION}"),
    ]


def time_target(caller: Caller, target: Target, requests: int) -> dict[str, Any]:
    """Time `requests` requests of one target after one warm-up: p50, p95, max, size."""
    caller.expect(200, target.path)  # warm-up: templates compiled, statements cached
    times, size = [], 0
    for _ in range(requests):
        environ = caller.environ(target.path)
        began = time.perf_counter()
        status, _, body = caller.call(environ)
        elapsed = time.perf_counter() - began
        if status != 200:
            raise BenchError(f"GET {target.path} answered {status}: {body[:300]!r}")
        times.append(elapsed * 1000)
        size = len(body)
    return {"kind": target.kind, "path": target.path, "requests": requests,
            "p50_ms": round(percentile(times, 0.50), 2),
            "p95_ms": round(percentile(times, 0.95), 2),
            "max_ms": round(max(times), 2), "bytes": size}


def profile_target(caller: Caller, target: Target) -> list[str]:
    """Where a page's time goes: cProfile over a few requests, the functions that take the
    most time with what they call, from the project and its libraries."""
    profiler = cProfile.Profile()
    for _ in range(PROFILE_REQUESTS):
        environ = caller.environ(target.path)
        profiler.enable()
        caller.call(environ)
        profiler.disable()
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    stats.sort_stats("cumulative").print_stats(r"scheduler|sqlalchemy|jinja2", PROFILE_LINES)
    return [line.rstrip() for line in out.getvalue().splitlines()
            if line.strip() and not line.startswith(("   Ordered", "   List reduced"))]


# --- the run ----------------------------------------------------------------------------------

def print_report(results: dict[str, Any]) -> None:
    """The history made, then one line per page and API call: p50 and p95 in ms."""
    made = results["history"]
    print(f"\nhistory: {made['jobs']} jobs, {made['executions']:,} executions "
          f"{made['by_status']}, {made['history_rows']:,} history rows, made through the "
          f"engine in {made['seconds']:.1f} s")
    print(f"\n{'request':40} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8} {'KiB':>7}")
    for name, row in results["targets"].items():
        flag = "  over 100 ms" if row["kind"] == "page" and row["p50_ms"] > SLOW_MS else ""
        print(f"{name:40} {row['p50_ms']:8.2f} {row['p95_ms']:8.2f} {row['max_ms']:8.2f} "
              f"{row['bytes'] / 1024:7.1f}{flag}")
    for name, lines in results["profiles"].items():
        print(f"\nprofile of {name} ({PROFILE_REQUESTS} requests):")
        print("\n".join(lines))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=1000, help="jobs of the collection (1000)")
    parser.add_argument("--occurrences", type=int, default=100,
                        help="fire times each job goes through (100)")
    parser.add_argument("--requests", type=int, default=30,
                        help="timed requests of each page and call (30)")
    parser.add_argument("--more-jobs", type=int, default=0,
                        help="jobs added afterwards, to time the lists again (0: none)")
    parser.add_argument("--no-profile", action="store_true",
                        help="do not profile the pages over 100 ms")
    results_argument(parser, RESULTS_FILE)
    args = parser.parse_args(argv)
    if args.jobs < 2 * ALWAYS_FAILING or args.occurrences < SKIP_EVERY or args.requests < 1:
        parser.error(f"need --jobs >= {2 * ALWAYS_FAILING}, --occurrences >= {SKIP_EVERY} "
                     "and --requests >= 1")
    return args


def measure(site: Site, settings: Settings, history: History, requests: int,
            profile: bool) -> tuple[dict[str, Any], dict[str, list[str]]]:
    """Sign in and time every target; profile the slow pages."""
    # The jobs name an address nothing listens on, on this machine: the API lets them be
    # changed only where outbound calls to private addresses are allowed.
    site_settings = replace(settings, database=replace(settings.database, url=site.url),
                            outbound=replace(settings.outbound, allow_private_networks=True))
    app = create_app(site_settings, FrozenClock(history.end), background=False)
    caller = signed_in(app, settings, site.subscription_id)
    chosen = targets(site.subscription_id, history)
    jobs_path = chosen[-1].path.rsplit("/", 1)[0]
    disable_jobs(caller, jobs_path, list(range(2, history.jobs, ALWAYS_FAILING))[:DISABLED])
    figures = {target.name: time_target(caller, target, requests) for target in chosen}
    profiles = {target.name: profile_target(caller, target) for target in chosen
                if profile and target.kind == "page" and figures[target.name]["p50_ms"] > SLOW_MS}
    return figures, profiles


def measure_more(site: Site, settings: Settings, history: History, more: int,
                 requests: int) -> dict[str, Any]:
    """Give the collection `more` jobs with no history, copied from one, far in the future,
    and time the job lists again."""
    print(f"adding {more:,} jobs ...", flush=True)
    far = history.end + timedelta(days=3650)
    copy_jobs(site, history.failing_job, ((f"more-{n:07d}", far) for n in range(more)))
    site_settings = replace(settings, database=replace(settings.database, url=site.url))
    app = create_app(site_settings, FrozenClock(history.end), background=False)
    caller = signed_in(app, settings, site.subscription_id)
    ui = (f"/ui/{site.subscription_id}/cloudservices/{CLOUD_SERVICE}/resources/scheduler/~/"
          f"jobcollections/{COLLECTION}/jobs")
    last = (history.jobs + more - 1) // PAGE_SIZE
    chosen = [Target(f"jobs of the collection, page 1, {history.jobs + more:,} jobs", "page",
                     ui),
              Target(f"jobs of the collection, page {last + 1}", "page", f"{ui}?page={last}"),
              Target(f"jobs of all collections, {history.jobs + more:,} jobs", "page",
                     f"/ui/{site.subscription_id}/jobs")]
    return {target.name: time_target(caller, target, requests) for target in chosen}


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and write its results."""
    args = parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="scheduler-ui-"))
    backend: Backend | None = None
    try:
        home = workdir / "home"
        settings, box = bench_home(home, max(100_000, 2 * args.jobs) + args.more_jobs)
        backend = Backend("sqlite", home, settings)
        site = backend.new_site("ui")
        print(f"{backend.version()}: {args.jobs} jobs, {args.occurrences} fire times each, "
              "made through the engine ...", flush=True)
        history = make_history(site, box, settings, args.jobs, args.occurrences)
        statuses = execution_statuses(site)
        figures, profiles = measure(site, settings, history, args.requests,
                                    not args.no_profile)
        if args.more_jobs:
            figures.update(measure_more(site, settings, history, args.more_jobs,
                                        args.requests))
        results = {
            "code": code_version(), "machine": machine_info(),
            "config": {"jobs": args.jobs, "occurrences": args.occurrences,
                       "more_jobs": args.more_jobs,
                       "requests": args.requests, "database": backend.version()},
            "history": {"jobs": args.jobs, "executions": sum(statuses.values()),
                        "by_status": statuses, "history_rows": history_count(site),
                        "seconds": round(history.seconds, 1)},
            "targets": figures, "profiles": profiles,
        }
        print_report(results)
        write_results(args.results, results)
        print(f"\nresults written to {shown(args.results)}")
    finally:
        if backend is not None:
            backend.close()
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
