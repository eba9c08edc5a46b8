"""Benchmark of the HTTPS management API, against a bare Flask app served the same way.

    .venv/bin/python bench/api.py [--jobs 100000] [--seconds 10] [--rounds 10] [--concurrency 8]

One run makes a temporary home with a large plan, a cloud service, a collection and one job
through the real API, copies that job --jobs times in bulk (`scheduler.services.bulk_jobs`), then
starts `scheduler serve` and a bare Flask app behind the same `GunicornServer` (same TLS
contexts with client certificates, same workers and threads) and measures, with client
processes holding keep-alive mutual-TLS connections:

  (a) GET job throughput and latency, --concurrency clients;
  (b) the same for the bare endpoint;
  (c) the ratio a/b, (a) and (b) alternating in --rounds rounds that share --seconds;
  (d) latency of GET job and of a page of 100 jobs with one sequential client, and of GET
      job through Resource Manager's route (its envelope and spelling on the same job);
  (e) new mutual-TLS connections per second (connect, handshake, one GET, close).

It prints a table with the goals, writes bench/results-api.json and stops every process it
started, also on error.

    .venv/bin/python bench/api.py --writes [--jobs 100000] [--seconds 10]
        [--databases sqlite,postgresql]

Instead, on each database (SQLite in a temporary home; PostgreSQL in a schema made for the run
and dropped at its end), `scheduler serve --role api` with a collection of 1,000 jobs and one of
--jobs, and in each collection one window per kind of request, --concurrency keep-alive
clients: GET of a job, PUT of new jobs, PUT replacing stored jobs, PATCH of stored jobs, and
DELETE of the jobs the PUT window made. Each write's rate is held against GET's in the same run
(goal: half or better, p99 under 20 ms), and its rate in the large collection against the small
one (flat). It writes bench/results-api-writes.json.
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing as mp
import queue
import random
import shutil
import signal
import ssl
import sys
import tempfile
import time
from array import array
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as `python bench/api.py`: make `bench` importable
    sys.path.insert(0, str(ROOT))

from bench.harness import (  # noqa: E402
    BenchError,
    Profiler,
    ServerProcess,
    database_kinds,
    free_port,
    machine_info,
    percentile,
    serve_argv,
    service_environment,
    shown,
    start_process,
    tree_cpu_seconds,
    write_results,
)
from bench.sites import (  # noqa: E402
    CLOUD_SERVICE_XML,
    COLLECTION_XML,
    drop_postgres_schemas,
    new_postgres_schema,
)
from scheduler.admin import init_home  # noqa: E402
from scheduler.db.session import Database  # noqa: E402
from scheduler.services.bulk_jobs import copy_job  # noqa: E402
from scheduler.settings import Settings, load_settings  # noqa: E402

RESULTS_FILE = ROOT / "bench" / "results-api.json"
WRITES_RESULTS_FILE = ROOT / "bench" / "results-api-writes.json"
API_VERSION = "api-version=2014-04-01"
# Resource Manager's routes over the same jobs (azure-mgmt-scheduler's version).
ARM_VERSION = "api-version=2016-03-01"
BARE_PATH = "/bare"  # bench.bare_server.BARE_PATH
PAGE_SIZE = 100
RATIO_GOAL = 0.60
P99_GOAL_MS = 20.0
MAX_ERROR_SAMPLES = 5
PROFILED_PHASES = ("a_api_keepalive", "d_page_sequential", "e_api_new_connections")
JOB_START = "2030-01-01T00:00:00Z"
JOB_DOCUMENT = {
    "startTime": JOB_START,
    "action": {"type": "http",
               "request": {"uri": "http://example.com/x", "method": "POST", "body": "x"}},
    "recurrence": {"frequency": "hour", "interval": 1},
}
JOB_BODY = json.dumps(JOB_DOCUMENT).encode()
PATCH_BODY = json.dumps({"state": "enabled"}).encode()
PLAN_TOML = '\n[plans.Bench]\nmax_job_count = {count}\nmax_recurrence = "PT1M"\n'

# --- TLS clients ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Target:
    """Where a server listens and the client certificate to show it."""

    name: str
    host: str
    port: int
    ca_file: str
    cert_file: str


def client_context(target: Target) -> ssl.SSLContext:
    """A TLS client context trusting the home CA and presenting the admin certificate.

    Built by hand: this machine's SSL_CERT_FILE / REQUESTS_CA_BUNDLE name the system store.
    """
    context = ssl.create_default_context(cafile=target.ca_file)
    context.load_cert_chain(target.cert_file)
    return context


def connect(target: Target, context: ssl.SSLContext) -> http.client.HTTPSConnection:
    """A new connection with its TCP and TLS handshakes done."""
    conn = http.client.HTTPSConnection(target.host, target.port, context=context, timeout=30)
    conn.connect()
    return conn


def exchange(conn: http.client.HTTPSConnection, method: str, path: str,
             body: bytes | None = None, headers: dict[str, str] | None = None
             ) -> tuple[int, dict[str, str], bytes, bool]:
    """One request on `conn`: status, headers, body and whether the server closes."""
    conn.request(method, path, body=body, headers=headers or {})
    response = conn.getresponse()
    data = response.read()
    return response.status, dict(response.getheaders()), data, response.will_close


class ApiClient:
    """A keep-alive mutual-TLS client for the setup calls."""

    def __init__(self, target: Target) -> None:
        self.target, self.context = target, client_context(target)
        self.conn: http.client.HTTPSConnection | None = None

    def call(self, method: str, path: str, body: bytes | None = None,
             content_type: str | None = None) -> tuple[int, dict[str, str], bytes]:
        """Send one request, reconnecting when the server closed the connection."""
        if self.conn is None:
            self.conn = connect(self.target, self.context)
        headers = {"Content-Type": content_type} if content_type else {}
        status, answer_headers, data, will_close = exchange(self.conn, method, path, body,
                                                            headers)
        if will_close:
            self.close()
        return status, {k.lower(): v for k, v in answer_headers.items()}, data

    def expect(self, status: int, method: str, path: str, body: bytes | None = None,
               content_type: str | None = None) -> tuple[dict[str, str], bytes]:
        """Send one request and fail unless it answers `status`."""
        got, headers, data = self.call(method, path, body, content_type)
        if got != status:
            raise BenchError(f"{method} {path} answered {got}, expected {status}: "
                             f"{data[:500]!r}")
        return headers, data

    def wait_operation(self, subscription: str, request_id: str, timeout: float = 60) -> None:
        """Poll an asynchronous operation until it succeeds."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            _, data = self.expect(200, "GET", f"/{subscription}/operations/{request_id}")
            if b"<Status>Succeeded</Status>" in data:
                return
            if b"<Status>Failed</Status>" in data:
                raise BenchError(f"operation {request_id} failed: {data!r}")
            time.sleep(0.05)
        raise BenchError(f"operation {request_id} did not finish in {timeout} s")

    def close(self) -> None:
        """Close the connection."""
        if self.conn is not None:
            self.conn.close()
            self.conn = None


# --- load generation -----------------------------------------------------------------------

# What each kind of request sends, and the status that counts it as done.
WRITE_KINDS = ("put_new", "put_replace", "patch", "delete")
DONE_STATUS = {"put_new": 201}


@dataclass(frozen=True)
class Workload:
    """Which requests a client sends: `job` (GET), `page`, `bare`, or a write: `put_new`
    (a job of a new id), `put_replace` and `patch` (of a stored job), `delete` (of the jobs
    this client's `put_new` made before: `made[client]` of them)."""

    kind: str
    jobs_path: str = ""
    jobs: int = 0
    width: int = 6
    made: tuple[int, ...] = ()
    version: str = API_VERSION

    def path(self, rng: random.Random) -> str:
        """The path of the next read."""
        if self.kind == "bare":
            return BARE_PATH
        if self.kind != "page":
            number = rng.randrange(self.jobs)
            return f"{self.jobs_path}/{job_name(number, self.width)}?{self.version}"
        skip = rng.randrange(max(1, self.jobs - PAGE_SIZE + 1))
        return f"{self.jobs_path}?{self.version}&$top={PAGE_SIZE}&$skip={skip}"

    def request(self, rng: random.Random, client: int, sent: int
                ) -> tuple[str, str, bytes | None] | None:
        """The next request of this client, which has sent `sent`: method, path, body;
        None when it has nothing left to send (a `delete` that deleted what it made)."""
        if self.kind not in WRITE_KINDS:
            return "GET", self.path(rng), None
        if self.kind == "put_new":
            return "PUT", f"{self.jobs_path}/{new_job_name(client, sent)}?{API_VERSION}", \
                JOB_BODY
        if self.kind == "delete":
            if sent >= self.made[client]:
                return None
            return "DELETE", f"{self.jobs_path}/{new_job_name(client, sent)}?{API_VERSION}", \
                None
        path = self.path(rng)
        return ("PUT", path, JOB_BODY) if self.kind == "put_replace" else ("PATCH", path,
                                                                            PATCH_BODY)

    @property
    def done_status(self) -> int:
        """The status of a request that did what it asked."""
        return DONE_STATUS.get(self.kind, 200)


def job_name(number: int, width: int) -> str:
    """The id of the bench job numbered `number`."""
    return f"job-{number:0{width}d}"


def new_job_name(client: int, number: int) -> str:
    """The id of the `number`th job client `client` creates in a `put_new` phase."""
    return f"new-{client:02d}-{number:08d}"


@dataclass(frozen=True)
class ClientPlan:
    """What one client process does during a phase."""

    target: Target
    workload: Workload
    seconds: float
    reconnect: bool
    seed: int
    index: int = 0  # of the client among the phase's


def client_process(plan: ClientPlan, ready: Any, go: Any, start_at: Any, results: Any) -> None:
    """Run one closed-loop client: warm up, wait for the start, send requests until the end."""
    rng = random.Random(plan.seed)
    context = client_context(plan.target)
    conn: http.client.HTTPSConnection | None = None
    try:
        for _ in range(3):  # warm-up: handshakes, app loading in the worker
            conn = conn or connect(plan.target, context)
            status, _, data, will_close = exchange(conn, "GET", plan.workload.path(rng))
            if status != 200:
                raise BenchError(f"warm-up answered {status}: {data[:300]!r}")
            if will_close or plan.reconnect:
                conn.close()
                conn = None
    except Exception as exc:  # reported to the parent, which stops the run
        ready.put(f"{type(exc).__name__}: {exc}")
        return
    ready.put("")
    go.wait()
    start = start_at.value
    end = start + plan.seconds
    while time.monotonic() < start:
        time.sleep(0.0005)
    cpu_start = time.process_time()
    latencies = array("d")
    statuses: Counter[int] = Counter()
    errors, reconnects = 0, 0
    samples: list[str] = []
    workload, sent, active = plan.workload, 0, 0.0
    headers = {"Content-Type": "application/json"}
    while True:
        request = workload.request(rng, plan.index, sent)
        began = time.monotonic()
        if began >= end or request is None:
            break
        method, path, body = request
        sent += 1
        try:
            if conn is None:
                conn = connect(plan.target, context)
                reconnects += 1
            status, _, data, will_close = exchange(conn, method, path, body,
                                                   headers if body else None)
        except (OSError, http.client.HTTPException) as exc:
            errors += 1
            if len(samples) < MAX_ERROR_SAMPLES:
                samples.append(f"{method} {path}: {type(exc).__name__}: {exc}")
            if conn is not None:
                conn.close()
            conn = None
            continue
        finished = time.monotonic()
        if will_close or plan.reconnect:
            conn.close()
            conn = None
        if finished > end:
            break
        latencies.append(finished - began)
        active = finished - start
        statuses[status] += 1
        if status != workload.done_status:
            errors += 1
            if len(samples) < MAX_ERROR_SAMPLES:
                samples.append(f"{method} {path}: {status} {data[:300]!r}")
    if conn is not None:
        conn.close()
    results.put({
        "latencies": latencies.tobytes(),
        "statuses": dict(statuses),
        "errors": errors,
        "samples": samples,
        "reconnects": reconnects if not plan.reconnect else 0,
        "cpu": time.process_time() - cpu_start,
        "index": plan.index, "done": statuses[workload.done_status],
        "active": active, "ran_out": request is None,
    })

@dataclass
class PhaseResult:
    """The figures of one measured phase."""

    name: str
    target: str
    workload: str
    clients: int
    reconnect: bool
    seconds: float
    requests: int = 0
    per_second: float = 0.0
    p50_ms: float = 0.0
    p90_ms: float = 0.0
    p99_ms: float = 0.0
    max_ms: float = 0.0
    mean_ms: float = 0.0
    errors: int = 0
    statuses: dict[str, int] = field(default_factory=dict)
    error_samples: list[str] = field(default_factory=list)
    keepalive_reconnects: int = 0
    server_cpu_ms_per_request: float | None = None
    client_cpu_ms_per_request: float | None = None
    server_cpu_percent: float | None = None


@dataclass
class Window:
    """What the clients of one measured window saw, before it is summed into a phase."""

    seconds: float
    latencies: list[float] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)
    errors: int = 0
    samples: list[str] = field(default_factory=list)
    reconnects: int = 0
    client_cpu: float = 0.0
    server_cpu: float | None = None
    done: dict[int, int] = field(default_factory=dict)  # requests done, by client


def run_window(name: str, target: Target, workload: Workload, *, clients: int,
               seconds: float, reconnect: bool, server_pid: int,
               profiler: Profiler | None = None) -> Window:
    """Run `clients` client processes against `target` for `seconds`; what they saw."""
    ctx = mp.get_context("fork")
    ready, results = ctx.Queue(), ctx.Queue()
    go, start_at = ctx.Event(), ctx.Value("d", 0.0)
    processes = [
        ctx.Process(target=client_process, daemon=True, args=(
            ClientPlan(target, workload, seconds, reconnect, seed=1000 * i + len(name),
                       index=i),
            ready, go, start_at, results))
        for i in range(clients)
    ]
    try:
        for process in processes:
            process.start()
        try:
            problems = [problem for problem in (ready.get(timeout=120) for _ in processes)
                        if problem]
        except queue.Empty:
            raise BenchError(f"{name}: a client process died before it was ready") from None
        if problems:
            raise BenchError(f"{name}: clients could not start: {problems[0]}")
        start = time.monotonic() + 0.2
        start_at.value = start
        go.set()
        time.sleep(max(0.0, start - time.monotonic()))
        cpu_before = tree_cpu_seconds(server_pid)
        if profiler is not None:
            profiler.start(server_pid, seconds)
        time.sleep(max(0.0, start + seconds - time.monotonic()))
        cpu_after = tree_cpu_seconds(server_pid)
        try:
            parts = [results.get(timeout=seconds + 120) for _ in processes]
        except queue.Empty:
            raise BenchError(f"{name}: a client process died during the run") from None
    finally:
        go.set()  # clients still waiting (after a failure) find their window over and leave
        for process in processes:
            process.join(timeout=10)
            if process.is_alive():
                process.kill()
    window = Window(seconds)
    if cpu_before is not None and cpu_after is not None:
        window.server_cpu = cpu_after - cpu_before
    if any(part["ran_out"] for part in parts):  # the rate is over the time it had work
        window.seconds = max(part["active"] for part in parts) or seconds
    for part in parts:
        window.done[part["index"]] = part["done"]
        chunk = array("d")
        chunk.frombytes(part["latencies"])
        window.latencies.extend(chunk)
        window.statuses.update(part["statuses"])
        window.errors += part["errors"]
        window.reconnects += part["reconnects"]
        window.samples.extend(part["samples"])
        window.client_cpu += part["cpu"]
    return window


def summarize(name: str, target: Target, workload: Workload, *, clients: int,
              reconnect: bool, windows: list[Window]) -> PhaseResult:
    """One phase's figures from its windows, printed on one line."""
    seconds = sum(window.seconds for window in windows)
    latencies = sorted(value for window in windows for value in window.latencies)
    statuses: Counter[int] = Counter()
    result = PhaseResult(name, target.name, workload.kind, clients, reconnect, seconds)
    for window in windows:
        statuses.update(window.statuses)
        result.errors += window.errors
        result.keepalive_reconnects += window.reconnects
        result.error_samples.extend(window.samples[:MAX_ERROR_SAMPLES])
    result.requests = len(latencies)
    result.per_second = len(latencies) / seconds
    result.statuses = {str(status): count for status, count in sorted(statuses.items())}
    if latencies:
        result.p50_ms = percentile(latencies, 0.50) * 1000
        result.p90_ms = percentile(latencies, 0.90) * 1000
        result.p99_ms = percentile(latencies, 0.99) * 1000
        result.max_ms = latencies[-1] * 1000
        result.mean_ms = sum(latencies) / len(latencies) * 1000
        client_cpu = sum(window.client_cpu for window in windows)
        result.client_cpu_ms_per_request = client_cpu / len(latencies) * 1000
        server_cpu = [window.server_cpu for window in windows]
        if None not in server_cpu:
            used = sum(cpu for cpu in server_cpu if cpu is not None)
            result.server_cpu_ms_per_request = used / len(latencies) * 1000
            result.server_cpu_percent = used / seconds * 100
    print(f"  {name}: {result.per_second:,.0f} req/s, p50 {result.p50_ms:.2f} ms, "
          f"p99 {result.p99_ms:.2f} ms, {result.errors} errors", flush=True)
    if result.keepalive_reconnects:
        print(f"    the server closed {result.keepalive_reconnects} keep-alive connections")
    for sample in result.error_samples[:MAX_ERROR_SAMPLES]:
        print(f"    error: {sample}")
    return result


# --- optional sampling profiler ------------------------------------------------------------

# --- servers -------------------------------------------------------------------------------

# --- setup ---------------------------------------------------------------------------------

def copy_jobs(settings: Settings, subscription: str, collection: str, template: str,
              jobs: int, width: int) -> float:
    """Copy the job `template` of cs1/`collection` into jobs 1..jobs-1, each with the
    template's start, through the services; returns seconds."""
    began = time.monotonic()
    start = datetime.fromisoformat(JOB_START)
    db = Database(settings.database_url)
    try:
        with db.transaction() as session:
            copy_job(session, subscription, "cs1", collection, template,
                     ((job_name(number, width), start) for number in range(1, jobs)),
                     settings.plans, datetime.now(UTC))
        if db.is_sqlite:
            # Fold the bulk insert's large WAL into the database file, as a long-running
            # server's would be; otherwise every read searches a WAL of the whole insert.
            # The reads measured here would pay for it.
            with db.read_engine.connect() as conn:
                conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        db.dispose()
    return time.monotonic() - began

# --- the run -------------------------------------------------------------------------------

@dataclass
class Bench:
    """One benchmark run: its home, servers and results."""

    args: argparse.Namespace
    workdir: Path
    env: dict[str, str]
    servers: list[ServerProcess] = field(default_factory=list)
    log_issues: dict[str, list[str]] = field(default_factory=dict)

    def run(self) -> dict[str, Any]:
        """Set up, measure every phase and return the results."""
        args = self.args
        home = self.workdir / "home"
        info = init_home(home, ["localhost", "127.0.0.1"])
        with (home / "scheduler.toml").open("a") as config:
            config.write(PLAN_TOML.format(count=max(1_000_000, args.jobs)))
        settings = load_settings(home, env=self.env)
        subscription = str(info["subscriptionId"])
        width = max(6, len(str(args.jobs - 1)))

        api_port, bare_port = free_port(), free_port()
        print(f"home {home}; starting scheduler serve on port {api_port}", flush=True)
        api = start_process(  # --role api: the engine is measured elsewhere
            "scheduler", serve_argv(home, "api", "--port", str(api_port)),
            self.workdir / "scheduler.log", self.env, "scheduler ready", api_port)
        self.servers.append(api)
        api_target = Target("scheduler", "127.0.0.1", api_port, str(info["caCert"]),
                            str(info["clientCert"]))

        setup_began = time.monotonic()
        client = ApiClient(api_target)
        service_path = f"/{subscription}/cloudservices/cs1"
        headers, _ = client.expect(202, "PUT", service_path, CLOUD_SERVICE_XML.encode(),
                                   "application/xml")
        client.wait_operation(subscription, headers["x-ms-request-id"])
        headers, _ = client.expect(
            202, "PUT", f"{service_path}/resources/scheduler/jobcollections/jc1",
            COLLECTION_XML.encode(), "application/xml")
        client.wait_operation(subscription, headers["x-ms-request-id"])
        jobs_path = f"{service_path}/resources/scheduler/~/jobcollections/jc1/jobs"
        template = job_name(0, width)
        client.expect(201, "PUT", f"{jobs_path}/{template}?{API_VERSION}",
                      json.dumps(JOB_DOCUMENT).encode(), "application/json")
        _, job_body = client.expect(200, "GET", f"{jobs_path}/{template}?{API_VERSION}")
        insert_seconds = copy_jobs(settings, subscription, "jc1", template, args.jobs, width)
        print(f"inserted {args.jobs - 1:,} jobs in {insert_seconds:.1f} s", flush=True)
        last = job_name(args.jobs - 1, width)
        client.expect(200, "GET", f"{jobs_path}/{last}?{API_VERSION}")
        _, page = client.expect(200, "GET", f"{jobs_path}?{API_VERSION}&$top={PAGE_SIZE}"
                                f"&$skip={args.jobs - PAGE_SIZE}")
        if len(json.loads(page)) != min(PAGE_SIZE, args.jobs):
            raise BenchError("the last page of jobs does not hold 100 jobs")
        client.close()
        setup_seconds = time.monotonic() - setup_began

        body_file = self.workdir / "bare-body.json"
        body_file.write_bytes(job_body)
        print(f"starting the bare app on port {bare_port}", flush=True)
        bare = start_process(
            "bare", [sys.executable, "-m", "bench.bare_server", "--home", str(home),
                     "--port", str(bare_port), "--body", str(body_file)],
            self.workdir / "bare.log", self.env, "bare ready", bare_port)
        self.servers.append(bare)
        bare_target = Target("bare", "127.0.0.1", bare_port, str(info["caCert"]),
                             str(info["clientCert"]))

        job = Workload("job", jobs_path, args.jobs, width)
        page_load = Workload("page", jobs_path, args.jobs, width)
        arm_jobs_path = (f"/subscriptions/{subscription}/resourceGroups/cs1/providers/"
                         "Microsoft.Scheduler/jobCollections/jc1/jobs")
        arm_job = Workload("job", arm_jobs_path, args.jobs, width, version=ARM_VERSION)
        bare_load = Workload("bare")
        seconds, clients = args.seconds, args.concurrency
        api_pid, bare_pid = api.process.pid, bare.process.pid
        # key, label, target, server pid, workload, clients, new connection per request
        plan = [
            ("a_api_keepalive", "(a) GET job, keep-alive", api_target, api_pid, job, clients,
             False),
            ("b_bare_keepalive", "(b) bare, keep-alive", bare_target, bare_pid, bare_load,
             clients, False),
            ("d_job_sequential", "(d) GET job, 1 client", api_target, api_pid, job, 1, False),
            ("arm_job_sequential", "(d) ARM GET job, 1 client", api_target, api_pid,
             arm_job, 1, False),
            ("d_page_sequential", "(d) page of 100, 1 client", api_target, api_pid, page_load,
             1, False),
            ("bare_sequential", "bare, 1 client", bare_target, bare_pid, bare_load, 1, False),
            ("e_api_new_connections", "(e) new conn + GET job", api_target, api_pid, job,
             clients, True),
            ("e_bare_new_connections", "new conn + bare", bare_target, bare_pid, bare_load,
             clients, True),
        ]
        print(f"measuring, {seconds:g} s per phase:", flush=True)
        windows: dict[str, list[Window]] = {key: [] for key, *_ in plan}
        profile: dict[str, Any] = {}
        # (a) and (b) alternate in short rounds, so that a change in what else the machine
        # runs weighs on both sides of the ratio alike.
        paired, single = plan[:2], plan[2:]
        rounds: list[dict[str, float]] = []
        for number in range(args.rounds):
            rates: dict[str, float] = {}
            for key, label, target, pid, workload, count, reconnect in paired:
                window = self._window(key, label, target, pid, workload, count, reconnect,
                                      seconds / args.rounds, profile, profiled=number == 0)
                windows[key].append(window)
                rates[key] = len(window.latencies) / window.seconds
            api_rate, bare_rate = rates["a_api_keepalive"], rates["b_bare_keepalive"]
            rounds.append({"api_per_second": api_rate, "bare_per_second": bare_rate,
                           "ratio": api_rate / bare_rate if bare_rate else 0.0})
            print(f"  round {number + 1}/{args.rounds}: GET job {api_rate:,.0f} req/s, bare "
                  f"{bare_rate:,.0f} req/s, ratio {rounds[-1]['ratio']:.1%}", flush=True)
        for key, label, target, pid, workload, count, reconnect in single:
            windows[key].append(self._window(key, label, target, pid, workload, count,
                                             reconnect, seconds, profile, profiled=True))
        phases = {
            key: summarize(label, target, workload, clients=count, reconnect=reconnect,
                           windows=windows[key])
            for key, label, target, _pid, workload, count, reconnect in plan
        }
        return {
            "machine": machine_info(),
            "config": {
                "jobs": args.jobs, "seconds": seconds, "rounds": args.rounds,
                "concurrency": clients,
                "server_workers": settings.server.workers,
                "server_threads": settings.server.threads,
                "worker_class": "gthread", "database": settings.database_url.split(":")[0],
                "job_body_bytes": len(job_body), "bare_body_bytes": len(job_body),
                "bulk_insert_seconds": round(insert_seconds, 2),
                "setup_seconds": round(setup_seconds, 2),
            },
            "phases": {key: vars(value) for key, value in phases.items()},
            "rounds": rounds,
            "goals": goals(phases, rounds),
            "profile": profile,
        }

    def _window(self, key: str, label: str, target: Target, pid: int, workload: Workload,
                clients: int, reconnect: bool, seconds: float, profile: dict[str, Any], *,
                profiled: bool) -> Window:
        """One measured window of a phase, sampled by py-spy when asked for and `profiled`."""
        profiler = self._profiler(key) if profiled and key in PROFILED_PHASES else None
        window = run_window(label, target, workload, clients=clients, seconds=seconds,
                            reconnect=reconnect, server_pid=pid, profiler=profiler)
        if profiler is not None:
            profile[key] = profiler.summary()
        return window

    def _profiler(self, phase: str) -> Profiler | None:
        if not self.args.profile:
            return None
        given = self.args.profile
        executable = shutil.which("py-spy") if given == "auto" else given
        if executable is None:
            print("py-spy not found; running without --profile")
            return None
        return Profiler(executable, self.workdir / f"profile-{phase}.txt")

    def close(self) -> None:
        """Stop every server, newest first, and keep what their logs complained about."""
        for server in reversed(self.servers):
            code = server.stop()
            issues = server.log_issues()
            if code not in (0, None):
                issues.append(f"exit status {code}")
            if issues:
                self.log_issues[server.name] = issues[:50]


# --- writes ---------------------------------------------------------------------------------

WRITE_RATIO_GOAL = 0.50
SMALL_COLLECTION = 1_000
WRITE_LABELS = {"job": "GET job", "put_new": "PUT new job", "put_replace": "PUT replace",
                "patch": "PATCH", "delete": "DELETE"}


@dataclass
class WriteBench:
    """`--writes`: GET against each write of jobs, by --concurrency keep-alive clients on one
    collection of SMALL_COLLECTION jobs and one of --jobs, on one database."""

    args: argparse.Namespace
    workdir: Path
    env: dict[str, str]
    database: str
    servers: list[ServerProcess] = field(default_factory=list)
    schema: str | None = None

    def run(self) -> dict[str, Any]:
        """Set up the home on the database, serve it, measure each collection."""
        home = self.workdir / f"home-{self.database}"
        info = init_home(home, ["localhost", "127.0.0.1"], env=self.env,
                         database_url=self._database_url())
        with (home / "scheduler.toml").open("a") as config:
            config.write(PLAN_TOML.format(count=10 * max(1_000_000, self.args.jobs)))
        settings = load_settings(home, env=self.env)
        port = free_port()
        api = start_process(
            "scheduler", serve_argv(home, "api", "--port", str(port)),
            self.workdir / f"scheduler-{self.database}.log", self.env, "scheduler ready", port)
        self.servers.append(api)
        target = Target("scheduler", "127.0.0.1", port, str(info["caCert"]),
                        str(info["clientCert"]))
        subscription = str(info["subscriptionId"])
        width = max(6, len(str(self.args.jobs - 1)))
        results: dict[str, Any] = {}
        for size in (SMALL_COLLECTION, self.args.jobs):
            jobs_path = self._collection(target, subscription, f"jc{size}", size, width,
                                         settings)
            results[str(size)] = self._measure(target, api.process.pid, jobs_path, size, width)
        return {"database": self.database, "collections": results,
                "goals": write_goals(results, self.args.jobs)}

    def _database_url(self) -> str | None:
        if self.database == "sqlite":
            return None
        self.schema, url = new_postgres_schema("bench_api")
        return url

    def _collection(self, target: Target, subscription: str, name: str, size: int,
                    width: int, settings: Settings) -> str:
        """A collection of `size` jobs (one made through the API, the rest copied)."""
        client = ApiClient(target)
        service = f"/{subscription}/cloudservices/cs1"
        if name == f"jc{SMALL_COLLECTION}":
            headers, _ = client.expect(202, "PUT", service, CLOUD_SERVICE_XML.encode(),
                                       "application/xml")
            client.wait_operation(subscription, headers["x-ms-request-id"])
        headers, _ = client.expect(202, "PUT", f"{service}/resources/scheduler/jobcollections/"
                                   f"{name}", COLLECTION_XML.encode(), "application/xml")
        client.wait_operation(subscription, headers["x-ms-request-id"])
        jobs_path = f"{service}/resources/scheduler/~/jobcollections/{name}/jobs"
        template = job_name(0, width)
        client.expect(201, "PUT", f"{jobs_path}/{template}?{API_VERSION}", JOB_BODY,
                      "application/json")
        client.close()
        seconds = copy_jobs(settings, subscription, name, template, size, width)
        print(f"  {name}: {size:,} jobs ({seconds:.1f} s to copy them in)", flush=True)
        return jobs_path

    def _measure(self, target: Target, pid: int, jobs_path: str, size: int, width: int
                 ) -> dict[str, Any]:
        """GET, then each write, one window each; DELETE removes what PUT new made."""
        seconds, clients = self.args.seconds, self.args.concurrency
        phases: dict[str, Any] = {}
        made: tuple[int, ...] = ()
        for kind in ("job", "put_new", "put_replace", "patch", "delete"):
            workload = Workload(kind, jobs_path, size, width, made)
            label = f"{WRITE_LABELS[kind]}, {size:,} jobs"
            window = run_window(label, target, workload, clients=clients, seconds=seconds,
                                reconnect=False, server_pid=pid)
            if kind == "put_new":
                made = tuple(window.done.get(i, 0) for i in range(clients))
            phases[kind] = vars(summarize(label, target, workload, clients=clients,
                                          reconnect=False, windows=[window]))
        return phases

    def close(self) -> None:
        """Stop the server and drop the PostgreSQL schema."""
        for server in reversed(self.servers):
            server.stop()
        if self.schema is not None:
            drop_postgres_schemas([self.schema])


def write_goals(collections: dict[str, Any], large: int) -> list[dict[str, Any]]:
    """Each write at half the GET rate or better with p99 under 20 ms, in both collections;
    and the cost of each write flat from SMALL_COLLECTION to `large` jobs."""
    found = []
    for size, phases in collections.items():
        get_rate = phases["job"]["per_second"]
        for kind in WRITE_KINDS:
            phase = phases[kind]
            ratio = phase["per_second"] / get_rate if get_rate else 0.0
            found.append({"goal": f"{WRITE_LABELS[kind]} / GET, {int(size):,} jobs",
                          "target": f">= {WRITE_RATIO_GOAL:.0%}", "measured": f"{ratio:.0%}",
                          "value": ratio, "pass": ratio >= WRITE_RATIO_GOAL})
            found.append({"goal": f"{WRITE_LABELS[kind]} p99, {int(size):,} jobs",
                          "target": f"< {P99_GOAL_MS:g} ms", "measured":
                          f"{phase['p99_ms']:.1f} ms", "value": phase["p99_ms"],
                          "pass": 0 < phase["p99_ms"] < P99_GOAL_MS and not phase["errors"]})
    small, big = collections[str(SMALL_COLLECTION)], collections[str(large)]
    for kind in WRITE_KINDS:
        rate_small, rate_big = small[kind]["per_second"], big[kind]["per_second"]
        kept = rate_big / rate_small if rate_small else 0.0
        found.append({"goal": f"{WRITE_LABELS[kind]}: rate at {large:,} / at "
                      f"{SMALL_COLLECTION:,} jobs", "target": ">= 80%",
                      "measured": f"{kept:.0%}", "value": kept, "pass": kept >= 0.8})
    return found


def print_writes(runs: list[dict[str, Any]]) -> None:
    """The write figures and goals of each database."""
    for run in runs:
        print(f"\n== writes on {run['database']} ==")
        print(f"{'phase':<32}{'req/s':>9}{'p50 ms':>8}{'p99 ms':>8}{'err':>5}"
              f"{'srv ms/req':>11}")
        for phases in run["collections"].values():
            for phase in phases.values():
                print(f"{phase['name']:<32}{phase['per_second']:>9,.0f}"
                      f"{phase['p50_ms']:>8.2f}{phase['p99_ms']:>8.2f}{phase['errors']:>5}"
                      f"{_cpu(phase['server_cpu_ms_per_request']):>11}")
        print(f"{'goal':<44}{'target':>10}{'measured':>12}  verdict")
        for goal in run["goals"]:
            print(f"{goal['goal']:<44}{goal['target']:>10}{goal['measured']:>12}  "
                  f"{'PASS' if goal['pass'] else 'FAIL'}")


def run_writes(args: argparse.Namespace, workdir: Path, env: dict[str, str]) -> int:
    """`--writes` on each of --databases; writes --results (WRITES_RESULTS_FILE)."""
    runs = []
    for database in args.databases:
        print(f"=== writes on {database} ===", flush=True)
        bench = WriteBench(args, workdir, env, database)
        try:
            runs.append(bench.run())
        except (BenchError, OSError, http.client.HTTPException) as exc:
            print(f"\nbench failed on {database}: {exc}", file=sys.stderr)
            return 1
        finally:
            bench.close()
    write_results(args.results, {"machine": machine_info(), "config": {
        "jobs": args.jobs, "small": SMALL_COLLECTION, "seconds": args.seconds,
        "concurrency": args.concurrency}, "runs": runs})
    print_writes(runs)
    print(f"\nresults written to {shown(args.results)}")
    return 0


def goals(phases: dict[str, PhaseResult], rounds: list[dict[str, float]]
          ) -> list[dict[str, Any]]:
    """Each goal with its measured value and verdict."""
    api, bare = phases["a_api_keepalive"], phases["b_bare_keepalive"]
    ratio = api.per_second / bare.per_second if bare.per_second else 0.0
    errors = sum(phase.errors for phase in phases.values())
    job, page = phases["d_job_sequential"], phases["d_page_sequential"]
    return [
        {"goal": "(c) API / bare throughput", "target": f">= {RATIO_GOAL:.0%}",
         "measured": f"{ratio:.1%}", "value": ratio, "pass": ratio >= RATIO_GOAL,
         "by_round": [entry["ratio"] for entry in rounds]},
        {"goal": "(d) GET job p99, 1 client", "target": f"< {P99_GOAL_MS:g} ms",
         "measured": f"{job.p99_ms:.2f} ms", "value": job.p99_ms,
         "pass": 0 < job.p99_ms < P99_GOAL_MS},
        {"goal": "(d) page of 100 p99, 1 client", "target": f"< {P99_GOAL_MS:g} ms",
         "measured": f"{page.p99_ms:.2f} ms", "value": page.p99_ms,
         "pass": 0 < page.p99_ms < P99_GOAL_MS},
        {"goal": "every response 200", "target": "0 errors", "measured": f"{errors} errors",
         "value": errors, "pass": errors == 0},
    ]


def _cpu(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def print_report(results: dict[str, Any], log_issues: dict[str, list[str]],
                 path: Path = RESULTS_FILE) -> None:
    """The table of figures and goals."""
    machine, config = results["machine"], results["config"]
    print()
    print(f"Scheduler API benchmark: {config['jobs']:,} jobs, {config['seconds']:g} s per "
          f"phase, {config['concurrency']} client processes (closed loop)")
    print(f"machine: {machine['cores']} cores ({machine['cpu']}), {machine['platform']}, "
          f"Python {machine['python']}, {machine['openssl']}")
    print(f"server: gunicorn {machine['gunicorn']} gthread, {config['server_workers']} "
          f"worker(s) x {config['server_threads']} threads, {config['database']}; "
          f"job body {config['job_body_bytes']} B; clients share the same cores")
    print()
    header = (f"{'phase':<28}{'cli':>4}{'requests':>10}{'req/s':>9}{'p50 ms':>8}{'p90 ms':>8}"
              f"{'p99 ms':>8}{'max ms':>8}{'err':>5}{'srv cpu%':>9}{'srv ms/req':>11}"
              f"{'cli ms/req':>11}")
    print(header)
    print("-" * len(header))
    for phase in results["phases"].values():
        print(f"{phase['name']:<28}{phase['clients']:>4}{phase['requests']:>10,}"
              f"{phase['per_second']:>9,.0f}{phase['p50_ms']:>8.2f}{phase['p90_ms']:>8.2f}"
              f"{phase['p99_ms']:>8.2f}{phase['max_ms']:>8.1f}{phase['errors']:>5}"
              f"{_cpu(phase['server_cpu_percent']):>9}"
              f"{_cpu(phase['server_cpu_ms_per_request']):>11}"
              f"{_cpu(phase['client_cpu_ms_per_request']):>11}")
    print()
    print(f"{'goal':<34}{'target':>10}{'measured':>14}  verdict")
    for goal in results["goals"]:
        verdict = "PASS" if goal["pass"] else "FAIL"
        print(f"{goal['goal']:<34}{goal['target']:>10}{goal['measured']:>14}  {verdict}")
    by_round = results["goals"][0]["by_round"]
    print(f"(c) by round, (a) and (b) alternating: "
          f"{', '.join(f'{ratio:.1%}' for ratio in by_round)}")
    for phase in results["phases"].values():
        for sample in phase["error_samples"]:
            print(f"error in {phase['name']}: {sample}")
    for key, summary in (results.get("profile") or {}).items():
        if not summary:
            continue
        print(f"\npy-spy, server worker during {results['phases'][key]['name']} "
              "(figures of a profiled run are disturbed by the sampler):")
        for kind in ("self", "inclusive"):
            print(f"  top frames by {kind} time:")
            for frame, share in summary[kind]:
                print(f"    {share:5.1f}%  {frame}")
    for name, issues in log_issues.items():
        print(f"\n{name} log reported:")
        for line in issues[:20]:
            print(f"  {line}")
    print(f"\nresults written to {shown(path)}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=100_000, help="jobs in the collection")
    parser.add_argument("--seconds", type=float, default=10, help="length of each phase")
    parser.add_argument("--rounds", type=int, default=10,
                        help="rounds in which (a) and (b) alternate, sharing --seconds")
    parser.add_argument("--concurrency", type=int, default=8, help="client processes")
    parser.add_argument("--workers", type=int, help="gunicorn workers (default: config's)")
    parser.add_argument("--threads", type=int, help="threads per worker (default: config's)")
    parser.add_argument("--profile", nargs="?", const="auto", metavar="PY_SPY",
                        help="sample the server worker with py-spy in (a), (d) page, (e)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary home")
    parser.add_argument("--writes", action="store_true",
                        help="instead: GET against PUT (new, replace), PATCH and DELETE of "
                        "jobs, in collections of 1,000 and --jobs jobs")
    parser.add_argument("--databases", default="sqlite,postgresql",
                        help="with --writes: sqlite and/or postgresql")
    parser.add_argument("--results", type=Path,
                        help="where to write the results as JSON (bench/results-api.json, "
                        "with --writes bench/results-api-writes.json)")
    args = parser.parse_args(argv)
    args.databases = database_kinds(parser, args.databases)
    if args.results is None:
        args.results = WRITES_RESULTS_FILE if args.writes else RESULTS_FILE
    if args.jobs < PAGE_SIZE or args.seconds <= 0 or args.concurrency < 1 or args.rounds < 1:
        parser.error("need --jobs >= 100, --seconds > 0, --concurrency >= 1, --rounds >= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; 0 when it ran (goals may still fail), 1 when it could not."""
    args = parse_args(argv)
    # SIGTERM unwinds like Ctrl-C, so the servers are stopped and the home removed.
    signal.signal(signal.SIGTERM, lambda _signum, _frame: sys.exit(143))
    env = service_environment()
    if args.workers:
        env["SCHEDULER_SERVER_WORKERS"] = str(args.workers)
    if args.threads:
        env["SCHEDULER_SERVER_THREADS"] = str(args.threads)
    workdir = Path(tempfile.mkdtemp(prefix="scheduler-bench-"))
    if args.writes:
        try:
            return run_writes(args, workdir, env)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
    bench = Bench(args, workdir, env)
    results: dict[str, Any] | None = None
    try:
        results = bench.run()
    except (BenchError, OSError, http.client.HTTPException) as exc:
        print(f"\nbench failed: {exc}", file=sys.stderr)
    finally:
        bench.close()
        if args.keep:
            print(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    if results is None:
        for name, issues in bench.log_issues.items():
            print(f"{name} log reported:", *issues[:20], sep="\n  ", file=sys.stderr)
        return 1
    results["server_log_issues"] = bench.log_issues
    write_results(args.results, results)
    print_report(results, bench.log_issues, args.results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
