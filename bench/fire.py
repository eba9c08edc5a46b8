"""Benchmark of the firing engine, against stock APScheduler 3 and a bare async HTTP client.

    .venv/bin/python bench/fire.py [--jobs 10000] [--steady-jobs 5000] [--steady-seconds 60]
        [--scale-jobs 1000000] [--scale-seconds 60] [--databases sqlite,postgresql]
        [--quick] [--phases burst,steady,steady-all,steady-nodes,scale,queues] [--batch N]
        [--max-sleep S] [--profile] [--keep] [--metrics] [--results FILE]

One run, on each database (SQLite files in a temporary home; PostgreSQL schemas made for the
run and dropped at its end, one per phase), with one receiver process (bench/receiver.py) that
answers every POST `200` and records its arrival time and Azure headers:

1. Throughput: --jobs one-shot HTTP jobs due at the same instant, created with the service's
   own `parse_job` + `create_job`, fired by one real engine process (`scheduler serve --role
   engine`), which is up before the instant and readies the calls ahead of it (its
   lookahead). Then the same burst again with no time to ready it: jobs copied in bulk
   (`scheduler.services.bulk_jobs`), due before a new engine process starts. Then the same
   POSTs from stock APScheduler 3 (BackgroundScheduler, SQLAlchemyJobStore on the same
   database in a table of its own, default ThreadPoolExecutor, date triggers), from
   APScheduler's fastest persistent set-up (AsyncIOScheduler, AsyncIOExecutor, one aiohttp
   session, the same store; the goal is held against the better of the two), and from bare
   clients with 200 requests in flight: httpx.AsyncClient, an aiohttp session, and plain
   asyncio streams over 200 keep-alive connections (the raw ceiling: no HTTP parsing beyond
   finding the end).
   Executions per second from first to last arrival, and from the due instant (a bare client:
   its start) to the last arrival, which a runner that starts late pays for and which the
   APScheduler goal is judged by; lateness (arrival minus expected time),
   when the last history row was written, job history rows, duplicate execution tags. Then
   one engine pass of 500 jobs is cut into its stages (tick, claim, HTTP calls, recording)
   and timed in this process.
2. Steady state (phase `steady`): --steady-jobs jobs (5,000) recurring every second for
   --steady-seconds (60), fired by one `scheduler serve --role engine`: occurrences expected,
   fired and missed per job, duplicates, p50/p99/max lateness (the first and last second
   ignored), and CPU per fired job: user + system CPU seconds of the serving process and its
   children, from when they are up and idle to the last arrival, over the executions that
   arrived (the database server's CPU is not in it). Phase `steady-all`: the same load fired
   by `scheduler serve --role all` (the API's gunicorn workers, idle, and the engine in a
   child process: what the default command runs), its CPU that of the whole process tree.
   Phase `steady-nodes`, PostgreSQL only: the same load fired by two `scheduler serve --role
   engine` processes sharing one database; how the executions split between the nodes (the
   executions table's `node`), their CPU summed, and the rate each configuration sustained,
   one engine beside two. Each runs on a fresh database, its servers started and idle before
   the jobs are moved to their start.
3. Scale: --scale-jobs stored jobs (one job copied in bulk), 1% of them due
   per minute spread over the run, the rest far in the future; the engine runs --scale-seconds
   and its RSS is sampled from /proc. Then, in this process, `Engine.tick(now)` is timed on
   batches of 500 due jobs. Everything again with 10,000 stored jobs and the same firing rate,
   to show what depends on the number of stored jobs.
4. Queues: --queue-messages one-shot jobs due at once posting to Redis, then to RabbitMQ,
   each against its client library publishing alone.

Jobs are created with a start time a day ahead, then moved to their real start (through
`bulk_jobs.reschedule_jobs`, as a replace would store it) just before the engine starts (in
the steady phases: once their servers are up and idle; they find the move within their
longest sleep), so that the engine is up and idle when they fall due. --quick makes every
phase small (steady ones: 1,000 jobs for 10 s). It prints a table per database and writes
bench/results-fire.json (or --results); every process it started and every temporary file,
schema and table is removed, also on error.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as `python bench/fire.py`: make `bench` importable
    sys.path.insert(0, str(ROOT))

import aiohttp  # noqa: E402
import httpx  # noqa: E402

from bench import aps_runner, queues  # noqa: E402
from bench.harness import (  # noqa: E402
    BenchError,
    CpuMeter,
    ManagedProcess,
    Profiler,
    code_version,
    database_kinds,
    free_port,
    machine_info,
    package_version,
    percentile,
    read_meters,
    serve_argv,
    service_environment,
    wait_until_idle,
    write_results,
)
from bench.receiver import ReceiverClient  # noqa: E402
from bench.sites import (  # noqa: E402
    Backend,
    Site,
    add_jobs,
    bench_home,
    copy_jobs,
    create_jobs,
    execution_statuses,
    executions_by_node,
    history_count,
    http_document,
    now_utc,
    reschedule,
    settle,
    wait_for_engine_nodes,
    wait_for_history,
    whole_second,
)
from scheduler.actions.base import Outcome, ReadyAction  # noqa: E402
from scheduler.actions.http import HttpCaller  # noqa: E402
from scheduler.actions.registry import standard_actions  # noqa: E402
from scheduler.clock import SystemClock  # noqa: E402
from scheduler.domain.durations import format_datetime  # noqa: E402
from scheduler.engine.leased import Claimed  # noqa: E402
from scheduler.engine.node import Engine  # noqa: E402
from scheduler.engine.options import engine_options  # noqa: E402
from scheduler.security.secrets import SecretBox  # noqa: E402
from scheduler.settings import EngineSettings, Settings, load_settings  # noqa: E402

RESULTS_FILE = ROOT / "bench" / "results-fire.json"
BROKERS_TOML = (f'\n[brokers.{{redis}}]\nurl = "{queues.REDIS_URL}"\n'
                f'\n[brokers.{{amqp}}]\nurl = "{queues.RABBITMQ_URL}"\n')
REDIS_BROKER, AMQP_BROKER = "bench-redis", "bench-amqp"
BURST_PATH, STEADY_PATH, SCALE_PATH, PASS_PATH = "/burst", "/steady", "/scale", "/pass"
COLD_PATH = "/cold"
HTTPX_PATH, AIOHTTP_PATH, ASYNCIO_PATH = "/raw-httpx", "/raw-aiohttp", "/raw-asyncio"
APS_TABLE = "apscheduler_bench_jobs"
TEMPLATE = "template-0000000"  # the scale phase's job made through create_job, then copied
RAW_CONCURRENCY = 200
ENGINE_LEAD = 6.0  # seconds between moving the jobs to their start and that start
APS_LEAD = 6.0
TICK_ROUNDS = 5
PASS_ROUNDS = 3
SMALL_STORED = 10_000
STALL_SECONDS = 30.0
DRAIN_SECONDS = 30.0  # longest wait for late arrivals after a run (--quick: 10)
# Goals
ENGINE_VS_APS = 40.0  # against the better of APScheduler's two set-ups
ENGINE_VS_RAW = 0.5
QUEUE_VS_RAW = 0.5
BURST_P99_S = 3.0
STEADY_P99_MS = 100.0
TICK_GROWTH = 2.0
CATCH_UP_PER_SECOND = 10_000  # jobs due before the engine started, sent a second after it is up

IDLE_WAIT = 30.0

DEFAULTS = {"jobs": 10_000, "steady_jobs": 5_000, "steady_seconds": 60.0,
            "scale_jobs": 1_000_000, "scale_seconds": 60.0, "queue_messages": 10_000}
# --quick: a smoke run of a few minutes; the burst is smaller as well, the engine being slow
QUICK = {"jobs": 1_000, "steady_jobs": 1_000, "steady_seconds": 10.0,
         "scale_jobs": 100_000, "scale_seconds": 20.0, "queue_messages": 10_000}
# --tiny: every phase at a size that only shows the benchmark still runs (its figures mean
# nothing); the engine's batch and the scale phase's smaller size shrink with it.
TINY = {"jobs": 100, "steady_jobs": 20, "steady_seconds": 3.0,
        "scale_jobs": 400, "scale_seconds": 2.0, "queue_messages": 100, "batch": 50}
TINY_SMALL_STORED = 200
PHASES = ("burst", "steady", "steady-all", "steady-nodes", "scale", "queues")
# The steady phases: (phase, key in the results, who fires the jobs)
STEADY_RUNS = (("steady", "steady", "engine (1 process)"),
               ("steady-all", "steady_all", "serve --role all"),
               ("steady-nodes", "steady_nodes", "2 engines"))
STEADY_GOAL_NAMES = {"steady": "steady", "steady_all": "steady --role all",
                     "steady_nodes": "steady 2 engines"}


# --- small helpers -------------------------------------------------------------------------

def epoch(text_value: str) -> float:
    """Seconds since the epoch of an ISO-8601 time with a Z."""
    return datetime.fromisoformat(text_value).timestamp()


# --- profiling ---------------------------------------------------------------------------

# Engine stages, as py-spy names their frames; shares are of samples holding the GIL.
STAGES = (
    ("tick: due jobs -> leased executions", "Engine.tick ("),
    ("claim executions (retries, left over)", "Engine.claim_executions ("),
    ("HTTP calls (the HTTP client, answers made into records)", "scheduler/actions/http"),
    ("record outcomes", "Engine.record ("),
    ("check the jobs of readied calls", "Engine.changed_jobs ("),
    ("renew leases", "Engine.extend_leases ("),
    ("next wake-up", "Engine.next_wakeup ("),
)


class EngineProfiler(Profiler):
    """py-spy on the engine process, sampling only the thread that holds the GIL."""

    def start(self, server_pid: int, seconds: float) -> None:
        """Sample `server_pid` for `seconds`."""
        self.process = subprocess.Popen(
            [self.executable, "record", "--pid", str(server_pid), "--duration",
             str(max(1, int(seconds))), "--rate", "200", "--gil", "--format", "raw",
             "--output", str(self.output), "--nonblocking"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def summary(self, top: int = 15) -> dict[str, list[tuple[str, float]]]:
        """Top frames by self and inclusive share, and each engine stage's share."""
        found = super().summary(top)
        if not found or not self.output.exists():
            return found
        stages: Counter[str] = Counter()
        total = 0
        for line in self.output.read_text().splitlines():
            stack, _, count_text = line.rpartition(" ")
            if not stack or not count_text.isdigit():
                continue
            total += int(count_text)
            label = next((name for name, frame in STAGES if frame in stack),
                         "event loop, other (socket I/O, asyncio)")
            stages[label] += int(count_text)
        found["stages"] = [(name, n / total * 100) for name, n in stages.most_common()]
        return found


# --- arrivals ------------------------------------------------------------------------------

@dataclass
class Arrivals:
    """What the receiver got for one workload."""

    expected: int
    received: int = 0
    distinct_tags: int = 0
    duplicates: int = 0
    first_after_due_s: float = 0.0
    last_after_due_s: float = 0.0
    per_second: float = 0.0
    # What a user waits for: the burst's executions over the seconds from the due instant to
    # the last arrival (a runner that starts late pays for it here, not in `per_second`).
    completed_per_second: float = 0.0
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    max_ms: float = 0.0
    # For tags received more than once: seconds from the first arrival to the next ones, and
    # the first arrivals' seconds after the due time.
    duplicate_gaps_s: list[float] = field(default_factory=list)
    duplicate_first_s: list[float] = field(default_factory=list)


def summarize(records: list[tuple[float, str, str, str, str]], expected: int,
              due: float | None = None) -> Arrivals:
    """Rates (first to last arrival; from `due` to the last arrival), lateness and
    duplicates of a set of records."""
    result = Arrivals(expected, received=len(records))
    if not records:
        return result
    arrivals = sorted(r[0] for r in records)
    late = sorted(r[0] - epoch(r[2]) for r in records)
    tags = Counter(r[3] for r in records)
    result.distinct_tags = len(tags)
    result.duplicates = sum(n - 1 for n in tags.values())
    span = arrivals[-1] - arrivals[0]
    result.per_second = (len(arrivals) - 1) / span if span > 0 else 0.0
    result.p50_ms = percentile(late, 0.50) * 1000
    result.p99_ms = percentile(late, 0.99) * 1000
    result.max_ms = late[-1] * 1000
    if due is not None:
        result.first_after_due_s = arrivals[0] - due
        result.last_after_due_s = arrivals[-1] - due
        result.completed_per_second = completion_rate(len(arrivals), result.last_after_due_s)
    if result.duplicates:
        times: dict[str, list[float]] = defaultdict(list)
        for record in records:
            if tags[record[3]] > 1:
                times[record[3]].append(record[0])
        for seen in times.values():
            seen.sort()
            result.duplicate_gaps_s += [round(t - seen[0], 2) for t in seen[1:]]
            result.duplicate_first_s.append(round(seen[0] - (due or seen[0]), 2))
        result.duplicate_gaps_s.sort()
        result.duplicate_first_s.sort()
    return result


def completion_rate(received: int, last_after_due_s: float) -> float:
    """Executions per second from the due instant until the last of them arrived."""
    return received / last_after_due_s if last_after_due_s > 0 else 0.0


def completed_per_second(row: dict[str, Any]) -> float:
    """A row's completion rate; worked out for a results file written before it was."""
    if "completed_per_second" in row:
        return float(row["completed_per_second"])
    return completion_rate(row["received"], row["last_after_due_s"])


def wait_for_arrivals(receiver: ReceiverClient, target: int, deadline: float,
                      stall: float = STALL_SECONDS, not_before: float = 0.0) -> int:
    """Poll the receiver until `target` requests, no progress for `stall` s, or `deadline`."""
    count, last_change = receiver.count(), time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.25)
        now_count = receiver.count()
        if now_count != count:
            count, last_change = now_count, time.monotonic()
        if count >= target and time.monotonic() >= not_before:
            break
        if time.monotonic() - max(last_change, not_before) > stall:
            break
    return count


# --- jobs --------------------------------------------------------------------------------

def queue_document(kind: str, target: Any, start: datetime) -> dict[str, Any]:
    """A one-shot job posting one message to the bench's Redis stream or RabbitMQ queue."""
    if kind == "redis":
        action = {"type": "redis", "redisMessage": {
            "broker": REDIS_BROKER, "stream": target.stream, "message": "bench"}}
    else:
        action = {"type": "amqp", "amqpMessage": {
            "broker": AMQP_BROKER, "exchange": "", "routingKey": target.queue,
            "message": "bench"}}
    action["retryPolicy"] = {"retryType": "none"}
    return {"startTime": format_datetime(start), "action": action}


# --- bare clients --------------------------------------------------------------------------

def raw_headers(expected: str, tag: str) -> dict[str, str]:
    """The headers the bare clients send: those of the engine's calls."""
    return {"Content-Type": "text/plain", "x-ms-scheduler-jobid": tag,
            "x-ms-scheduler-jobcollectionid": "jc1",
            "x-ms-scheduler-expected-execution-time": expected, "x-ms-execution-tag": tag,
            "x-ms-client-request-id": str(uuid.uuid4())}


async def httpx_blast(url: str, count: int, concurrency: int) -> str:
    """POST `count` times with one httpx.AsyncClient, `concurrency` in flight."""
    expected = format_datetime(now_utc())
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    semaphore = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(limits=limits, trust_env=False) as client:
        async def one(number: int) -> None:
            async with semaphore:
                response = await client.post(url, content=b"x",
                                             headers=raw_headers(expected, f"h{number}"))
                if response.status_code != 200:
                    raise BenchError(f"the receiver answered {response.status_code}")

        await asyncio.gather(*(one(number) for number in range(count)))
    return expected


async def aiohttp_blast(url: str, count: int, concurrency: int) -> str:
    """POST `count` times with one aiohttp.ClientSession, `concurrency` in flight."""
    expected = format_datetime(now_utc())
    semaphore = asyncio.Semaphore(concurrency)
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector, trust_env=False) as session:
        async def one(number: int) -> None:
            async with semaphore, session.post(
                    url, data=b"x", headers=raw_headers(expected, f"o{number}")) as response:
                await response.read()
                if response.status != 200:
                    raise BenchError(f"the receiver answered {response.status}")

        await asyncio.gather(*(one(number) for number in range(count)))
    return expected


async def asyncio_blast(port: int, path: str, count: int, concurrency: int) -> str:
    """POST `count` times over `concurrency` keep-alive connections of plain asyncio streams."""
    expected = format_datetime(now_utc())
    numbers = iter(range(count))

    async def connection() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            for number in numbers:
                headers = "".join(f"{k}: {v}\r\n" for k, v in
                                  raw_headers(expected, f"a{number}").items())
                writer.write(f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{headers}"
                             "Content-Length: 1\r\n\r\nx".encode())
                head = await reader.readuntil(b"\r\n\r\n")
                if not head.startswith(b"HTTP/1.1 200"):
                    raise BenchError(f"the receiver answered {head[:40]!r}")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                await reader.readexactly(length)
        finally:
            writer.close()

    await asyncio.gather(*(connection() for _ in range(concurrency)))
    return expected


# --- the run -------------------------------------------------------------------------------

@dataclass
class Bench:
    """One benchmark run: its home, receiver, processes and results."""

    args: argparse.Namespace
    workdir: Path
    env: dict[str, str]
    receiver: ReceiverClient | None = None
    processes: list[ManagedProcess] = field(default_factory=list)
    backends: list[Backend] = field(default_factory=list)
    profiles: dict[str, Any] = field(default_factory=dict)

    def run(self) -> dict[str, Any]:
        """Set up, run every phase on every database, return the results."""
        args = self.args
        home = self.workdir / "home"
        count = max(2 * args.scale_jobs, 2 * args.jobs, 2 * args.steady_jobs, 100_000)
        settings, box = bench_home(
            home, count, BROKERS_TOML.format(redis=REDIS_BROKER, amqp=AMQP_BROKER))
        self.receiver = ReceiverClient(ROOT, self.workdir / "receiver.log")
        print(f"receiver on port {self.receiver.port}; home {home}", flush=True)
        machine = machine_info()
        for package in ("apscheduler", "httpx", "httpcore", "anyio", "psycopg"):
            machine[package] = package_version(package)
        results: dict[str, Any] = {"machine": machine, "config": self._config(),
                                   "code": code_version(), "databases": {}}
        for kind in args.databases:
            backend = Backend(kind, home, settings)
            self.backends.append(backend)
            machine[f"{kind}_version"] = backend.version()
            print(f"\n=== {backend.version()} ===", flush=True)
            try:
                figures: dict[str, Any] = {"version": backend.version()}
                if "burst" in args.phases:
                    figures["throughput"] = self.throughput(backend, box, settings)
                for phase, key, _label in STEADY_RUNS:
                    if phase in args.phases:
                        figures[key] = self.steady(backend, box, settings, phase)
                if "steady" in figures and "steady_nodes" in figures:
                    figures["steady_scaling"] = steady_scaling(figures)
                if "scale" in args.phases:
                    figures["scale"] = self.scale(backend, box)
                if "queues" in args.phases:
                    figures["queues"] = self.queues(backend, box, settings)
                figures["goals"] = goals(figures)
                results["databases"][kind] = figures
            finally:
                backend.close()
        results["profiles"] = self.profiles
        results["code_at_end"] = code_version()
        return results

    @property
    def drain(self) -> float:
        """How long to wait for late arrivals once a run's time is over."""
        return 10.0 if self.args.quick or self.args.tiny else DRAIN_SECONDS

    @property
    def small_stored(self) -> int:
        """The scale phase's smaller size, held against --scale-jobs."""
        return TINY_SMALL_STORED if self.args.tiny else SMALL_STORED

    def _config(self) -> dict[str, Any]:
        args = self.args
        defaults = engine_options(EngineSettings(), sqlite=False)
        return {
            "jobs": args.jobs, "steady_jobs": args.steady_jobs,
            "steady_seconds": args.steady_seconds, "scale_jobs": args.scale_jobs,
            "scale_seconds": args.scale_seconds, "small_stored_jobs": self.small_stored,
            "queue_messages": args.queue_messages, "queue_raw_concurrency":
            queues.RAW_CONCURRENCY,
            "quick": args.quick, "tiny": args.tiny, "metrics": args.metrics,
            "raw_concurrency": RAW_CONCURRENCY,
            "drain_seconds": self.drain, "phases": args.phases,
            "steady_lead_seconds": self.steady_lead,
            "engine_batch": args.batch or defaults.batch,
            "engine_max_sleep_seconds": args.max_sleep or defaults.max_sleep,
            "aps_executor": "ThreadPoolExecutor() (APScheduler default: 10 threads)",
            "aps_asyncio_executor": "AsyncIOScheduler, AsyncIOExecutor, one aiohttp session "
            "(200 connections)",
            "aps_misfire_grace_seconds": aps_runner.MISFIRE_GRACE_SECONDS,
        }

    # --- processes ---

    def _engine_env(self, site: Site) -> dict[str, str]:
        env = dict(self.env)
        env["SCHEDULER_DATABASE_URL"] = site.url
        env["SCHEDULER_OUTBOUND_ALLOW_PRIVATE_NETWORKS"] = "true"
        if self.args.batch:
            env["SCHEDULER_ENGINE_BATCH"] = str(self.args.batch)
        if self.args.max_sleep:
            env["SCHEDULER_ENGINE_MAX_SLEEP_SECONDS"] = str(self.args.max_sleep)
        return env

    def start_engine(self, site: Site, name: str) -> ManagedProcess:
        """`scheduler serve --role engine` on the site's database (with `--metrics`, serving
        its metrics on a port of its own)."""
        return self._serve(site, f"engine-{name}", "engine",
                           self.workdir / f"engine-{site.label}-{name}.log")

    def start_serve_all(self, site: Site, name: str) -> ManagedProcess:
        """`scheduler serve --role all` on the site's database, its API on a free port: the
        gunicorn workers and, in a child process, the engine. Ready once the engine's
        heartbeat is in the database (its own ready line goes nowhere)."""
        process = self._serve(site, f"serve-all-{name}", "all",
                              self.workdir / f"serve-all-{site.label}-{name}.log",
                              ["--host", "127.0.0.1", "--port", str(free_port())])
        wait_for_engine_nodes(site, 1, time.monotonic() + 90)
        process.ready_at = time.time()
        return process

    def _serve(self, site: Site, name: str, role: str, log: Path,
               extra: list[str] | None = None) -> ManagedProcess:
        """`scheduler serve --role ROLE` on the site's database, once it says it is ready."""
        env = self._engine_env(site)
        # Engines on one machine, each under a name of its own (not the host's, which two
        # live nodes may not share).
        env["SCHEDULER_ENGINE_NODE_NAME"] = name
        if self.args.metrics:
            env["SCHEDULER_METRICS_PORT"] = str(free_port())
        process = ManagedProcess(
            name, serve_argv(self.workdir / "home", role, *(extra or [])), env, log,
            "scheduler ready", tree=role == "all")
        process.metrics_port = int(env.get("SCHEDULER_METRICS_PORT", 0))
        self.processes.append(process)
        return process

    def start_steady_servers(self, site: Site, phase: str) -> list[ManagedProcess]:
        """What fires the jobs of a steady phase: one engine, `serve --role all`, or two
        engines on the same database."""
        if phase == "steady-all":
            return [self.start_serve_all(site, "steady")]
        if phase == "steady-nodes":
            return [self.start_engine(site, "steady-a"), self.start_engine(site, "steady-b")]
        return [self.start_engine(site, "steady")]

    def counted_attempts(self, process: ManagedProcess) -> dict[str, Any]:
        """With `--metrics`: the attempts and first-attempt latenesses the engine's metrics
        counted, to hold against the arrivals."""
        if not process.metrics_port:
            return {}
        page = httpx.get(f"http://127.0.0.1:{process.metrics_port}/metrics",
                         timeout=10).text
        counted = {"metrics_attempts": 0.0, "metrics_lateness_count": 0.0}
        for line in page.splitlines():
            if line.startswith("scheduler_engine_attempts_total{"):
                counted["metrics_attempts"] += float(line.rsplit(" ", 1)[1])
            elif line.startswith("scheduler_engine_lateness_seconds_count "):
                counted["metrics_lateness_count"] = float(line.rsplit(" ", 1)[1])
        return counted

    def stop(self, process: ManagedProcess) -> dict[str, Any]:
        """Stop a process we started."""
        self.processes.remove(process)
        return process.stop()

    def _profile(self, key: str, pid: int, seconds: float) -> EngineProfiler | None:
        if not self.args.profile:
            return None
        executable = shutil.which("py-spy") or "/tmp/pyspy/bin/py-spy"
        if not Path(executable).exists():
            print("  py-spy not found; not profiling")
            return None
        profiler = EngineProfiler(executable, self.workdir / f"profile-{key}.txt")
        profiler.start(pid, seconds)
        return profiler

    @property
    def steady_lead(self) -> float:
        """Seconds from moving the steady jobs to their start to that start: idle engines
        find the move within their longest sleep, then ready the first second ahead."""
        options = engine_options(EngineSettings(), sqlite=False)
        longest_sleep = self.args.max_sleep or options.max_sleep
        return max(ENGINE_LEAD, longest_sleep + options.lookahead.total_seconds() + 1.5)

    def _sleep_until(self, moment: float) -> None:
        time.sleep(max(0.0, moment - time.time()))

    # --- 1. throughput ---

    def throughput(self, backend: Backend, box: SecretBox, settings: Settings
                   ) -> dict[str, Any]:
        """The burst: engine, APScheduler, bare clients."""
        assert self.receiver is not None
        receiver, jobs = self.receiver, self.args.jobs
        site = backend.new_site("burst")
        print(f"throughput: creating {jobs:,} jobs with parse_job + create_job ...", end="",
              flush=True)
        url = receiver.url(BURST_PATH)
        rate = create_jobs(site, http_document(url, now_utc() + timedelta(days=1)), jobs,
                           "burst-", box, settings)
        settle(site)
        print(f" {rate:,.0f} jobs/s", flush=True)
        receiver.reset()
        due = reschedule(site, http_document(url, whole_second(
            now_utc() + timedelta(seconds=ENGINE_LEAD))))
        engine_figures = self.fire_burst(site, "burst", BURST_PATH, due.timestamp(),
                                         f"{backend.kind}-burst")
        if engine_figures["ready_after_due_s"] > 0:
            print(f"  warning: the engine was ready {engine_figures['ready_after_due_s']:.1f} "
                  "s late")
        engine_figures.update(executions=execution_statuses(site),
                              create_jobs_per_second=round(rate))
        print(f"  engine: {engine_figures['received']:,} received, "
              f"{engine_figures['per_second']:,.0f}/s, "
              f"p99 late {engine_figures['p99_ms'] / 1000:.2f} s, "
              f"history {engine_figures['history_rows']:,}", flush=True)

        cold = self.cold_burst(site, box, settings)
        aps = self.apscheduler(site, jobs)
        aps_asyncio = self.apscheduler(site, jobs, "asyncio")
        raw = self.raw(jobs)
        receiver.reset()
        passes = measure_passes(site, box, settings, receiver.url(PASS_PATH))
        print(f"  engine passes in this process, {passes['batch']} jobs each: tick "
              f"{passes['tick_ms']:.0f} ms, HTTP "
              f"{passes['http_ms']:.0f} ms, record {passes['record_ms']:.0f} ms", flush=True)
        return {"engine": engine_figures, "engine_cold": cold, "apscheduler": aps,
                "apscheduler_asyncio": aps_asyncio, **raw,
                "engine_passes": passes}

    def fire_burst(self, site: Site, name: str, path: str, due_s: float,
                   profile_key: str | None = None) -> dict[str, Any]:
        """Start an engine on the site and measure it firing the burst sent to `path`, due
        at `due_s`: arrivals and lateness, its CPU from the instant (or from its start, if
        later), when the last history row was written and how many it wrote, its RSS."""
        assert self.receiver is not None
        receiver, jobs = self.receiver, self.args.jobs
        before = history_count(site)
        engine = self.start_engine(site, name)
        since = max(due_s, engine.ready_at)
        self._sleep_until(since)
        meter = CpuMeter(engine.pid)
        profiler = self._profile(profile_key, engine.pid, 15) if profile_key else None
        received = wait_for_arrivals(receiver, jobs, time.monotonic() + max(300, jobs / 20))
        cpu = meter.read(time.time() - since)
        history_after_due_s = wait_for_history(site, before + received) - due_s
        counted = self.counted_attempts(engine)
        process = self.stop(engine)
        if profiler is not None and profile_key is not None:
            self.profiles[profile_key] = profiler.summary()
        records = [r for r in receiver.dump() if r[1] == path]
        figures = vars(summarize(records, jobs, due_s))
        figures.update(
            ready_after_due_s=engine.ready_at - due_s, history_after_due_s=history_after_due_s,
            history_rows=history_count(site) - before,
            distinct_jobs=len({r[4] for r in records}), **cpu, **counted,
            **{k: v for k, v in process.items() if k != "rss_end_mib"})
        return figures

    def cold_burst(self, site: Site, box: SecretBox, settings: Settings) -> dict[str, Any]:
        """The burst again with no time to ready it ahead: the jobs (copied in bulk) were
        due before the engine started, so every one waits for its tick. Lateness counts the
        engine's start-up."""
        assert self.receiver is not None
        receiver, jobs = self.receiver, self.args.jobs
        receiver.reset()
        due = now_utc().replace(microsecond=0)  # passed already: nothing can be readied
        add_jobs(site, http_document(receiver.url(COLD_PATH), due),
                 ((f"cold-{n:07d}", due) for n in range(jobs)), box, settings)
        settle(site)
        figures = self.fire_burst(site, "cold", COLD_PATH, due.timestamp(),
                                  f"{site.db.engine.dialect.name}-cold")
        print(f"  engine, jobs due before it started: {figures['received']:,} received, "
              f"{figures['per_second']:,.0f}/s", flush=True)
        return figures

    def apscheduler(self, site: Site, jobs: int, setup: str = "threads") -> dict[str, Any]:
        """The same burst from APScheduler 3 in one of its set-ups (`bench/aps_runner.py`):
        stock (threads), or its fastest persistent one (asyncio)."""
        assert self.receiver is not None
        receiver = self.receiver
        receiver.reset()
        due = whole_second(now_utc() + timedelta(seconds=APS_LEAD))
        print(f"  APScheduler ({setup}): storing jobs ...", end="", flush=True)
        began = time.monotonic()
        aps_runner.prepare_jobs(site.url, APS_TABLE, receiver.port, jobs, due, setup)
        print(f" {time.monotonic() - began:.1f} s; running", end="", flush=True)
        process = ManagedProcess(
            f"apscheduler-{setup}", [sys.executable, "-m", "bench.aps_runner", "--url",
                                     site.url, "--table", APS_TABLE, "--setup", setup],
            self.env, self.workdir / f"aps-{setup}-{site.db.engine.dialect.name}.log",
            aps_runner.READY)
        self.processes.append(process)
        due_s = due.timestamp()
        self._sleep_until(due_s)
        meter = CpuMeter(process.pid)
        received = wait_for_arrivals(receiver, jobs, time.monotonic() + max(300, jobs / 10))
        cpu = meter.read(time.time() - due_s)
        stopped = self.stop(process)
        records = [r for r in receiver.dump() if r[1] == aps_runner.PATH]
        figures = vars(summarize(records, jobs, due_s))
        figures.update(**cpu, **{k: v for k, v in stopped.items() if k != "rss_end_mib"})
        figures["left_in_store"] = aps_runner.left_in_store(site.url, APS_TABLE)
        print(f" {received:,} received, {figures['per_second']:,.0f}/s (due to last "
              f"{figures['completed_per_second']:,.0f}/s), p99 late "
              f"{figures['p99_ms'] / 1000:.2f} s", flush=True)
        return figures

    def raw(self, jobs: int) -> dict[str, Any]:
        """The same number of POSTs from bare clients in this process."""
        assert self.receiver is not None
        receiver = self.receiver
        out: dict[str, Any] = {}
        clients: list[tuple[str, str, Callable[[], Coroutine[Any, Any, str]]]] = [
            ("raw_httpx", HTTPX_PATH, lambda: httpx_blast(
                receiver.url(HTTPX_PATH), jobs, RAW_CONCURRENCY)),
            ("raw_aiohttp", AIOHTTP_PATH, lambda: aiohttp_blast(
                receiver.url(AIOHTTP_PATH), jobs, RAW_CONCURRENCY)),
            ("raw_asyncio", ASYNCIO_PATH, lambda: asyncio_blast(
                receiver.port, ASYNCIO_PATH, jobs, RAW_CONCURRENCY)),
        ]
        for key, path, blast in clients:
            receiver.reset()
            meter = CpuMeter(os.getpid())
            began = time.time()
            asyncio.run(blast())
            cpu = meter.read(time.time() - began)
            records = [r for r in receiver.dump() if r[1] == path]
            out[key] = {**vars(summarize(records, jobs, began)), **cpu}
            print(f"  {key}: {len(records):,} received, {out[key]['per_second']:,.0f}/s",
                  flush=True)
        return out

    # --- 2. steady state ---

    def steady(self, backend: Backend, box: SecretBox, settings: Settings,
               phase: str = "steady") -> dict[str, Any]:
        """Jobs recurring every second, fired by what `phase` names (one engine, `serve
        --role all`, two engines): lateness, missed occurrences, CPU per fired job."""
        assert self.receiver is not None
        jobs, seconds = self.args.steady_jobs, int(self.args.steady_seconds)
        label = {name: text for name, _key, text in STEADY_RUNS}[phase]
        if phase == "steady-nodes" and backend.kind != "postgresql":
            reason = "PostgreSQL only (on SQLite, one engine per database)"
            print(f"{phase}: skipped, {reason}", flush=True)
            return {"runner": label, "skipped": reason}
        site = backend.new_site(phase.replace("-", "_"))
        url = self.receiver.url(STEADY_PATH)

        def document(start: datetime) -> dict[str, Any]:
            end = start + timedelta(seconds=seconds - 1)
            return http_document(url, start, {"frequency": "second", "interval": 1,
                                              "endTime": format_datetime(end)})

        print(f"{phase}: creating {jobs:,} jobs recurring every second ...", end="",
              flush=True)
        rate = create_jobs(site, document(now_utc() + timedelta(days=1)), jobs, "steady-",
                           box, settings)
        settle(site)
        print(f" {rate:,.0f} jobs/s; starting {label}", end="", flush=True)
        servers = self.start_steady_servers(site, phase)
        idle_s = wait_until_idle([server.pid for server in servers],
                                 time.monotonic() + IDLE_WAIT)
        print(f", idle after {idle_s:.1f} s; running {seconds} s", flush=True)
        profile_key = f"{backend.kind}-steady" if phase == "steady" else None
        figures = self.fire_steady(site, servers, document, profile_key)
        figures.update(runner=label, processes=len(servers), create_jobs_per_second=round(rate),
                       idle_wait_s=round(idle_s, 1))
        if phase == "steady-all":
            figures["api_workers"] = settings.server.workers
        cpu_job = figures["cpu_us_per_fired"]
        print(f"  {figures['received']:,}/{figures['expected']:,} received, p99 late "
              f"{figures['p99_ms']:.0f} ms, missed {figures['missed']:,}, "
              f"duplicates {figures['duplicates']}, CPU per fired job "
              f"{'-' if cpu_job is None else f'{cpu_job:,.0f} us'}", flush=True)
        return figures

    def fire_steady(self, site: Site, servers: list[ManagedProcess],
                    document: Callable[[datetime], dict[str, Any]], profile_key: str | None
                    ) -> dict[str, Any]:
        """Move the steady jobs to their start, let `servers` (up and idle) fire them for
        the run and drain; stop the servers; the run's figures."""
        assert self.receiver is not None
        receiver, jobs = self.receiver, self.args.steady_jobs
        seconds = int(self.args.steady_seconds)
        receiver.reset()
        began = time.time()
        whole = [CpuMeter(server.pid) for server in servers]
        start = reschedule(site, document(whole_second(
            now_utc() + timedelta(seconds=self.steady_lead))))
        start_s = start.timestamp()
        self._sleep_until(start_s)
        meters = [CpuMeter(server.pid) for server in servers]
        profiler = (self._profile(profile_key, servers[0].pid, min(15, seconds))
                    if profile_key else None)
        self._sleep_until(start_s + seconds)
        cpu = read_meters(meters, seconds)
        wait_for_arrivals(receiver, jobs * seconds, time.monotonic() + self.drain,
                          stall=15.0)
        window_s = time.time() - began
        total = read_meters(whole, window_s)
        counted: Counter[str] = Counter()
        for server in servers:
            counted.update(self.counted_attempts(server))
        names = {server.node_id(): server.server.name for server in servers}
        stopped = [(server.server.name, self.stop(server)) for server in servers]
        if profiler is not None and profile_key is not None:
            self.profiles[profile_key] = profiler.summary()
        records = [r for r in receiver.dump() if r[1] == STEADY_PATH]
        figures = steady_figures(records, jobs, start, seconds)
        cpu_total = total["process_cpu_seconds"]
        figures.update(
            executions=execution_statuses(site),
            executions_by_node={names.get(node, node): count
                                for node, count in executions_by_node(site).items()},
            cpu_seconds_total=cpu_total, cpu_window_seconds=round(window_s, 1),
            cpu_us_per_fired=None if cpu_total is None or not records
            else round(cpu_total / len(records) * 1e6, 1),
            **cpu, **dict(counted), **merge_stopped(stopped))
        return figures

    # --- 3. scale ---

    def scale(self, backend: Backend, box: SecretBox) -> dict[str, Any]:
        """RSS and tick cost with few and with many stored jobs, same firing rate."""
        seconds = self.args.scale_seconds
        per_minute = self.args.scale_jobs // 100
        out = {}
        for stored in (self.small_stored, self.args.scale_jobs):
            due = min(stored, max(1, round(per_minute * seconds / 60)))
            out[str(stored)] = self.scale_one(backend, box, stored, due, seconds)
        return out

    def scale_one(self, backend: Backend, box: SecretBox, stored: int, due: int,
                  seconds: float) -> dict[str, Any]:
        """One size: bulk insert, run the engine, time ticks in this process."""
        assert self.receiver is not None
        receiver = self.receiver
        site = backend.new_site(f"scale{stored}")
        settings = load_settings(self.workdir / "home", env={})
        url = receiver.url(SCALE_PATH)
        far = datetime(2031, 1, 1, tzinfo=UTC)
        create_jobs(site, http_document(url, far), 1, "template-", box, settings)
        print(f"scale: inserting {stored:,} jobs ...", end="", flush=True)
        began = time.monotonic()
        year = 365 * 86400
        count = 1 + copy_jobs(site, TEMPLATE, (
            (f"far-{n:07d}", far + timedelta(seconds=(n * 7919) % year))
            for n in range(1, stored - due)))
        settle(site)
        insert_seconds = time.monotonic() - began
        print(f" {insert_seconds:.1f} s; {due:,} due over {seconds:g} s", flush=True)
        receiver.reset()
        start = whole_second(now_utc() + timedelta(seconds=ENGINE_LEAD))
        step = timedelta(seconds=seconds) / due
        count += copy_jobs(site, TEMPLATE,
                           ((f"due-{n:07d}", start + n * step) for n in range(due)))
        engine = self.start_engine(site, f"scale{stored}")
        start_s = start.timestamp()
        self._sleep_until(start_s)
        meter = CpuMeter(engine.pid)
        self._sleep_until(start_s + seconds)
        cpu = meter.read(seconds)
        wait_for_arrivals(receiver, due, time.monotonic() + self.drain, stall=5.0)
        process = self.stop(engine)
        records = [r for r in receiver.dump() if r[1] == SCALE_PATH]
        arrivals = summarize(records, due, start_s)
        ticks = measure_ticks(site, box, TEMPLATE)
        figures = {"stored_jobs": count, "due_in_run": due, "run_seconds": seconds,
                   "insert_seconds": round(insert_seconds, 1), "received": arrivals.received,
                   "duplicates": arrivals.duplicates, "p50_ms": arrivals.p50_ms,
                   "p99_ms": arrivals.p99_ms, "max_ms": arrivals.max_ms, **cpu, **process,
                   "ticks": ticks}
        print(f"  {count:,} stored: RSS max {process['rss_max_mib']} MiB (anonymous "
              f"{process['rss_anon_max_mib']} MiB), "
              f"{arrivals.received:,}/{due:,} fired, p99 late {arrivals.p99_ms:.0f} ms, "
              f"tick of {ticks['batch']} due jobs {ticks['tick_ms']:.0f} ms", flush=True)
        return figures

    # --- 4. queue actions ---

    def queues(self, backend: Backend, box: SecretBox, settings: Settings) -> dict[str, Any]:
        """--queue-messages one-shot jobs due at once, posting to Redis, then to RabbitMQ;
        each against the raw ceiling of its client library publishing alone."""
        out: dict[str, Any] = {}
        kinds: list[tuple[str, Callable[[], Any]]] = [
            ("redis", queues.RedisTarget), ("amqp", queues.RabbitTarget)]
        for kind, make_target in kinds:
            target = make_target()
            try:
                out[kind] = self.queue_burst(backend, box, settings, kind, target)
            finally:
                target.close()
        return out

    def queue_burst(self, backend: Backend, box: SecretBox, settings: Settings, kind: str,
                    target: Any) -> dict[str, Any]:
        """One broker: the engine's burst of messages, then the raw ceiling's."""
        count = self.args.queue_messages
        site = backend.new_site(f"queues_{kind}")
        print(f"queues: {count:,} {kind} jobs ...", end="", flush=True)
        create_jobs(site, queue_document(kind, target, now_utc() + timedelta(days=1)), 1,
                    f"{kind}-0", box, settings)
        copy_jobs(site, f"{kind}-0{0:07d}", ((f"{kind}-{n:07d}", now_utc() + timedelta(days=1))
                                             for n in range(1, count)))
        settle(site)
        due = reschedule(site, queue_document(kind, target, whole_second(
            now_utc() + timedelta(seconds=ENGINE_LEAD))), settings.broker_kinds)
        engine = self.start_engine(site, f"queues-{kind}")
        self._sleep_until(max(due.timestamp(), engine.ready_at))
        meter = CpuMeter(engine.pid)
        began = time.time()
        fill = queues.watch_fill(target.count, count, time.monotonic() + max(120, count / 50))
        cpu = meter.read(time.time() - began)
        history_after_due_s = wait_for_history(site, count) - due.timestamp()
        process = self.stop(engine)
        tags = target.tags()
        target.reset()
        blast = (lambda: queues.redis_blast(target.url, target.stream, count)) \
            if kind == "redis" else (lambda: queues.amqp_blast(target.url, target.queue, count))
        raw = queues.raw_ceiling(blast, target.count, count, time.monotonic() + 120)
        target.reset()
        figures = {
            "messages": count, "received": fill.count, "per_second": round(fill.per_second),
            "distinct_tags": len(set(tags)), "duplicates": len(tags) - len(set(tags)),
            "history_rows": history_count(site), "executions": execution_statuses(site),
            "history_after_due_s": round(history_after_due_s, 2),
            "first_after_due_s": round(fill.first_at - due.timestamp(), 3),
            "last_after_due_s": round(fill.last_at - due.timestamp(), 3),
            "raw_received": raw.count, "raw_per_second": round(raw.per_second), **cpu,
            "log_issues": process.get("log_issues", []),
        }
        print(f" engine {figures['per_second']:,}/s (first {figures['first_after_due_s']:.2f} s, "
              f"last {figures['last_after_due_s']:.2f} s after due), raw "
              f"{figures['raw_per_second']:,}/s", flush=True)
        return figures

    def close(self) -> None:
        """Stop every process and drop every schema, newest first."""
        for process in reversed(self.processes):
            with contextlib.suppress(Exception):
                process.stop()
        self.processes.clear()
        if self.receiver is not None:
            self.receiver.stop()
        for backend in self.backends:
            with contextlib.suppress(Exception):
                backend.close()


def steady_figures(records: list[tuple[float, str, str, str, str]], jobs: int,
                   start: datetime, seconds: int) -> dict[str, Any]:
    """Lateness and per-job misses of the steady phase, first and last second ignored."""
    window = {format_datetime(start + timedelta(seconds=k)) for k in range(1, seconds - 1)}
    seen: dict[str, Counter[str]] = defaultdict(Counter)
    for record in records:
        seen[record[4]][record[2]] += 1
    job_ids = [f"steady-{n:07d}" for n in range(jobs)]
    missed_per_job = [len(window - set(seen.get(job_id, {}))) for job_id in job_ids]
    in_window = [r for r in records if r[2] in window]
    late = sorted(r[0] - epoch(r[2]) for r in in_window)
    duplicates = sum(n - 1 for per_job in seen.values() for n in per_job.values() if n > 1)
    tags = Counter(r[3] for r in records)
    by_second = Counter(round(epoch(r[2]) - start.timestamp()) for r in records)
    late_by_second: dict[int, list[float]] = defaultdict(list)
    for record in in_window:
        late_by_second[round(epoch(record[2]) - start.timestamp())].append(
            record[0] - epoch(record[2]))
    missed = sum(missed_per_job)
    return {
        "jobs": jobs, "seconds": seconds,
        "expected": jobs * seconds, "received": len(records),
        "received_by_second": {str(k): by_second[k] for k in sorted(by_second)},
        "p99_ms_by_second": {str(k): round(percentile(sorted(v), 0.99) * 1000)
                             for k, v in sorted(late_by_second.items())},
        "window_expected": jobs * len(window), "window_received": len(in_window),
        "missed": missed, "jobs_missing_any": sum(1 for m in missed_per_job if m),
        # occurrences of the window that went out at all (however late), per second
        "window_per_second": (jobs * len(window) - missed) / len(window),
        "duplicates": duplicates + sum(n - 1 for n in tags.values() if n > 1),
        "p50_ms": percentile(late, 0.50) * 1000, "p99_ms": percentile(late, 0.99) * 1000,
        "max_ms": (late[-1] * 1000) if late else 0.0,
        "per_second": len(records) / seconds,
    }


def merge_stopped(stopped: list[tuple[str, dict[str, Any]]]) -> dict[str, Any]:
    """What stopping the servers of one run reported (RSS: the largest of one server)."""
    if len(stopped) == 1:
        return {k: v for k, v in stopped[0][1].items() if k != "rss_end_mib"}
    reports = [report for _name, report in stopped]
    merged: dict[str, Any] = {key: max(report[key] for report in reports)
                              for key in ("rss_max_mib", "rss_anon_max_mib", "hwm_mib")}
    merged["exit_status"] = [report["exit_status"] for report in reports]
    merged["log_issues"] = [f"{name}: {line}" for name, report in stopped
                            for line in report["log_issues"]][:20]
    return merged


def steady_scaling(figures: dict[str, Any]) -> dict[str, Any]:
    """One engine against two, same run and load: the rate each fired, whether it kept up
    (none missed, p99 within the goal), and the ratio of the rates."""
    one, two = figures["steady"], figures["steady_nodes"]
    if "skipped" in two:
        return {"skipped": two["skipped"]}

    def side(row: dict[str, Any]) -> dict[str, Any]:
        return {"per_second": round(row["window_per_second"]), "missed": row["missed"],
                "p99_ms": round(row["p99_ms"], 1), "cpu_us_per_fired": row["cpu_us_per_fired"],
                "kept_up": row["missed"] == 0 and row["window_received"] > 0
                and row["p99_ms"] < STEADY_P99_MS}

    first, second = side(one), side(two)
    ratio = second["per_second"] / first["per_second"] if first["per_second"] else 0.0
    p99_ratio = second["p99_ms"] / first["p99_ms"] if first["p99_ms"] else 0.0
    return {"offered_per_second": one["jobs"], "1_engine": first, "2_engines": second,
            "ratio": round(ratio, 2), "p99_ratio": round(p99_ratio, 2)}


def measure_passes(site: Site, box: SecretBox, settings: Settings, url: str
                   ) -> dict[str, Any]:
    """One engine pass cut into its stages, in this process: tick (which leases what it
    makes), HTTP, record.

    The engine's loop overlaps these stages across passes; here each runs alone, through the
    engine's own methods (`tick`, `prepare` and the action's `submit` as its loop sends calls,
    `record`), on one event loop and its default thread pool, so that the time of each shows.
    """
    options = engine_options(EngineSettings(), sqlite=site.db.is_sqlite)
    batch = options.batch
    past = now_utc() - timedelta(minutes=1)
    add_jobs(site, http_document(url, past),
             ((f"pass-{n:07d}", past + timedelta(microseconds=n))
              for n in range(PASS_ROUNDS * batch)), box, settings)

    async def one_pass(engine: Engine) -> dict[str, float]:
        now = now_utc()
        marks = [time.perf_counter()]
        claimed = (await asyncio.to_thread(engine.tick, now, now, batch)).claimed
        marks.append(time.perf_counter())
        outcomes, started, ended = await send_calls(engine, claimed)
        finished = [engine.finished(execution, outcome, started, ended)
                    for execution, outcome in zip(claimed, outcomes, strict=True)]
        marks.append(time.perf_counter())
        await asyncio.to_thread(engine.record, list(finished))
        marks.append(time.perf_counter())
        failed = [record.outcome.message for record in finished if not record.outcome.success]
        if failed:
            raise BenchError(f"{len(failed)} calls of an engine pass failed: {failed[0]}")
        return {"claimed": len(claimed), "tick_ms": (marks[1] - marks[0]) * 1000,
                "http_ms": (marks[2] - marks[1]) * 1000, "record_ms": (marks[3] - marks[2]) * 1000}

    async def passes() -> list[dict[str, float]]:
        actions = standard_actions(HttpCaller(allow_private_networks=True))
        engine = Engine(site.db, box, SystemClock(), "bench-pass", actions, options)
        try:
            return [await one_pass(engine) for _ in range(PASS_ROUNDS)]
        finally:
            await actions.close()

    rounds = asyncio.run(passes())
    figures: dict[str, Any] = {"batch": batch, "rounds": rounds}
    for key in ("tick_ms", "http_ms", "record_ms"):
        figures[key] = statistics.median(r[key] for r in rounds)
    total = sum(figures[key] for key in ("tick_ms", "http_ms", "record_ms"))
    figures["total_ms"] = total
    figures["jobs_per_second"] = batch / total * 1000 if total else 0.0
    return figures


async def send_calls(engine: Engine, claimed: list[Claimed]
                     ) -> tuple[list[Outcome], datetime, datetime]:
    """Make the claimed executions' calls the way the engine's loop does: prepared, submitted
    without a task each, each answer read into its outcome; the outcomes, when the calls
    went out and when the last answer came."""
    timeout = engine.options.timeout
    calls = [engine.prepare(execution) for execution in claimed]
    prepared = [call for call in calls if isinstance(call, ReadyAction)]
    if len(prepared) != len(calls):
        raise BenchError("a call of an engine pass could not be prepared")
    started = engine.clock.now()
    answered = [call.submit(timeout) for call in prepared]
    await asyncio.wait(answered)
    ended = engine.clock.now()
    return ([call.outcome(answer, timeout) for call, answer in zip(prepared, answered,
                                                                     strict=True)],
            started, ended)


def measure_ticks(site: Site, box: SecretBox, source: str) -> dict[str, Any]:
    """Time `Engine.tick` on batches of due jobs, an idle tick, next_wakeup and a claim."""
    options = engine_options(EngineSettings(), sqlite=site.db.is_sqlite)
    batch = options.batch
    now = now_utc()
    past = now - timedelta(minutes=1)
    copy_jobs(site, source, ((f"tick-{n:07d}", past + timedelta(microseconds=n))
                                 for n in range(TICK_ROUNDS * batch)))
    actions = standard_actions(HttpCaller(allow_private_networks=True))
    engine = Engine(site.db, box, SystemClock(), "bench-tick", actions, options)

    def timed(action: Callable[[], Any], rounds: int) -> tuple[list[float], list[Any]]:
        times, values = [], []
        for _ in range(rounds):
            began = time.perf_counter()
            values.append(action())
            times.append((time.perf_counter() - began) * 1000)
        return times, values

    try:
        tick_times, fired = timed(lambda: engine.tick(now).fired, TICK_ROUNDS)
        idle_times, _ = timed(lambda: engine.tick(now), 10)
        wakeup_times, _ = timed(engine.next_wakeup, 10)
        claim_times, claimed = timed(lambda: len(engine.claim_executions(now)), TICK_ROUNDS)
    finally:
        asyncio.run(actions.close())
    return {
        "batch": batch, "fired": fired, "tick_ms": statistics.median(tick_times),
        "tick_ms_all": [round(t, 1) for t in tick_times],
        "tick_us_per_job": statistics.median(tick_times) * 1000 / batch,
        "idle_tick_ms": statistics.median(idle_times),
        "next_wakeup_ms": statistics.median(wakeup_times),
        "claim_ms": statistics.median(claim_times), "claimed": claimed,
    }


# --- goals and report ----------------------------------------------------------------------

def goal(name: str, target: str, measured: str, passed: bool) -> dict[str, Any]:
    """One goal with its measured value and verdict."""
    return {"goal": name, "target": target, "measured": measured, "pass": passed}


def goals(figures: dict[str, Any]) -> list[dict[str, Any]]:
    """Each goal of the phases that ran, with its measured value and verdict."""
    out = []
    if "throughput" in figures:
        burst = figures["throughput"]
        engine = burst["engine"]
        # APScheduler's best persistent set-up of the run, judged as a user feels it: the
        # one that had the whole burst delivered soonest after the instant (a results file of
        # a run before the asyncio row has the stock one only).
        aps_rows = [burst[key] for key in ("apscheduler", "apscheduler_asyncio") if key in burst]
        aps = max(aps_rows, key=completed_per_second)

        def ratio(other: dict[str, Any]) -> float:
            return engine["per_second"] / other["per_second"] if other["per_second"] else 0.0

        aps_done = completed_per_second(aps)
        vs_aps = completed_per_second(engine) / aps_done if aps_done else 0.0
        # The measure of earlier runs, beside it: the best first-to-last rate.
        first_to_last = ratio(max(aps_rows, key=lambda row: row["per_second"]))
        vs_httpx, vs_aiohttp, vs_asyncio = (
            ratio(burst["raw_httpx"]), ratio(burst["raw_aiohttp"]), ratio(burst["raw_asyncio"]))
        complete = (engine["received"] == engine["expected"] and engine["duplicates"] == 0
                    and engine["history_rows"] == engine["expected"])
        out += [
            goal("burst: engine / APScheduler's best, instant to last", f">= {ENGINE_VS_APS:g}x",
                 f"{vs_aps:.1f}x (first to last {first_to_last:.1f}x)", vs_aps >= ENGINE_VS_APS),
            goal("burst: engine / bare httpx client (brief)", f">= {ENGINE_VS_RAW:.0%}",
                 f"{vs_httpx:.0%}", vs_httpx >= ENGINE_VS_RAW),
            goal("burst: engine / bare aiohttp client", f">= {ENGINE_VS_RAW:.0%}",
                 f"{vs_aiohttp:.0%}", vs_aiohttp >= ENGINE_VS_RAW),
            goal("burst: engine / bare asyncio streams", f">= {ENGINE_VS_RAW:.0%}",
                 f"{vs_asyncio:.0%}", vs_asyncio >= ENGINE_VS_RAW),
            goal("burst: engine p99 lateness", f"< {BURST_P99_S:g} s",
                 f"{engine['p99_ms'] / 1000:.2f} s",
                 engine["received"] > 0 and engine["p99_ms"] < BURST_P99_S * 1000),
            goal("burst: all fired once, history written", "all",
                 f"{engine['received']:,} / {engine['history_rows']:,} / "
                 f"{engine['duplicates']} dup", complete),
        ]
        out += catch_up_goals(burst["engine_cold"], engine)
    out += steady_goals(figures)
    for kind, row in (figures.get("queues") or {}).items():
        share = row["per_second"] / row["raw_per_second"] if row["raw_per_second"] else 0.0
        out += [
            goal(f"queues: {kind} engine / raw client", f">= {QUEUE_VS_RAW:.0%}",
                 f"{share:.0%}", share >= QUEUE_VS_RAW),
            goal(f"queues: {kind} all sent once, recorded", "all",
                 f"{row['received']:,} / {row['history_rows']:,} / {row['duplicates']} dup",
                 row["received"] == row["messages"] == row["distinct_tags"]
                 == row["history_rows"]),
        ]
    if "scale" in figures:
        scale = figures["scale"]
        sizes = sorted(scale, key=int)
        small, large = scale[sizes[0]]["ticks"], scale[sizes[-1]]["ticks"]
        growth = large["tick_ms"] / small["tick_ms"] if small["tick_ms"] else 0.0
        out.append(goal(f"scale: tick({small['batch']}) at {int(sizes[-1]):,} / at "
                        f"{int(sizes[0]):,} stored", f"<= {TICK_GROWTH:g}x", f"{growth:.2f}x",
                        0 < growth <= TICK_GROWTH))
    return out


def catch_up_goals(cold: dict[str, Any], readied: dict[str, Any]) -> list[dict[str, Any]]:
    """Jobs due before the engine started: sent at the catch-up rate once it is up, beside
    the same burst readied ahead, and each sent and recorded once."""
    rate, span = cold["per_second"], cold["last_after_due_s"] - cold["ready_after_due_s"]
    allowed = cold["expected"] / CATCH_UP_PER_SECOND
    return [
        goal("catch-up: due before start, rate", f">= {CATCH_UP_PER_SECOND:,}/s",
             f"{rate:,.0f}/s (readied ahead {readied['per_second']:,.0f}/s)",
             rate >= CATCH_UP_PER_SECOND),
        goal("catch-up: all sent once the engine is up", f"<= {allowed:g} s", f"{span:.2f} s",
             cold["received"] > 0 and span <= allowed),
        goal("catch-up: all sent once, recorded once", "all",
             f"{cold['received']:,} / {cold['history_rows']:,} / {cold['duplicates']} dup",
             cold["received"] == cold["expected"] == cold["history_rows"]
             and cold["duplicates"] == 0),
    ]


def steady_goals(figures: dict[str, Any]) -> list[dict[str, Any]]:
    """The steady phases' goals: none missed, p99 lateness, no duplicate; those of `--role
    all` and of two engines beside one engine's in the same run."""
    out = []
    base = figures.get("steady")
    for _phase, key, _label in STEADY_RUNS:
        row = figures.get(key)
        if row is None or "skipped" in row:
            continue
        name, ran = STEADY_GOAL_NAMES[key], row["window_received"] > 0
        missed = f"{row['missed']:,} of {row['window_expected']:,}"
        p99 = _fmt_ms(row["p99_ms"]) if ran else "nothing on time"
        if base is not None and key != "steady":
            missed = f"{row['missed']:,} (1 engine {base['missed']:,})"
            p99 += f" (1 engine {_fmt_ms(base['p99_ms'])})"
        out += [
            goal(f"{name} {row['jobs']:,}/s: none missed", "0", missed,
                 ran and row["missed"] == 0),
            goal(f"{name} p99 < {STEADY_P99_MS:g} ms", f"< {STEADY_P99_MS:g} ms", p99,
                 ran and row["p99_ms"] < STEADY_P99_MS),
            goal(f"{name}: duplicates", "0", f"{row['duplicates']}", row["duplicates"] == 0),
        ]
    return out


def _fmt_ms(value: float) -> str:
    return f"{value / 1000:.2f} s" if value >= 10_000 else f"{value:.0f} ms"


def _print_burst(burst: dict[str, Any], jobs: int) -> None:
    print(f"burst of {jobs:,} one-shot POSTs due at one instant:")
    print("  (exec/s: first to last arrival; done/s: from the instant (bare clients: their "
          "start) to the last arrival)")
    print(f"  {'runner':<26}{'received':>9}{'exec/s':>8}{'done/s':>8}{'first':>8}{'last':>8}"
          f"{'p50 late':>10}{'p99 late':>10}{'dups':>6}{'cpu%':>7}{'machine%':>9}")
    for key, label in (("engine", "engine (1 process)"),
                       ("engine_cold", "engine, due before start"),
                       ("apscheduler", "APScheduler 3, 10 threads"),
                       ("apscheduler_asyncio", "APScheduler 3, asyncio"),
                       ("raw_httpx", f"httpx.AsyncClient, {RAW_CONCURRENCY}"),
                       ("raw_aiohttp", f"aiohttp session, {RAW_CONCURRENCY}"),
                       ("raw_asyncio", f"asyncio streams, {RAW_CONCURRENCY}")):
        if key not in burst:
            continue
        row = burst[key]
        cpu = row.get("process_cpu_percent")
        print(f"  {label:<26}{row['received']:>9,}{row['per_second']:>8,.0f}"
              f"{completed_per_second(row):>8,.0f}"
              f"{row['first_after_due_s']:>7.2f}s{row['last_after_due_s']:>7.1f}s"
              f"{_fmt_ms(row['p50_ms']):>10}{_fmt_ms(row['p99_ms']):>10}"
              f"{row['duplicates']:>6}{'-' if cpu is None else f'{cpu:.0f}':>7}"
              f"{row['machine_busy_percent']:>9.0f}")
    engine, cold = burst["engine"], burst["engine_cold"]
    print(f"  engine: calls readied ahead of the instant (lookahead); every history row "
          f"written {engine['history_after_due_s']:.1f} s after it. Due before start: the "
          f"engine was up {cold['ready_after_due_s']:.1f} s after the instant, every history "
          f"row written {cold['history_after_due_s']:.1f} s after it")
    print(f"  engine: jobs created at {engine['create_jobs_per_second']:,}/s; history rows "
          f"{engine['history_rows']:,}; executions {engine['executions']}; RSS max "
          f"{engine['rss_max_mib']} MiB (anonymous {engine['rss_anon_max_mib']} MiB); "
          f"APScheduler jobs left in its store "
          f"{burst['apscheduler']['left_in_store']:,}"
          + (f" (asyncio: {burst['apscheduler_asyncio']['left_in_store']:,})"
             if "apscheduler_asyncio" in burst else ""))
    if "metrics_attempts" in engine:
        print(f"  metrics on: the engine counted {engine['metrics_attempts']:,.0f} attempts "
              f"and {engine['metrics_lateness_count']:,.0f} first-attempt latenesses "
              f"(due before start: {cold['metrics_attempts']:,.0f})")
    passes = burst["engine_passes"]
    print(f"  one engine pass of {passes['batch']} due jobs, its stages run one after the "
          f"other in this process (median of {len(passes['rounds'])}): tick and lease "
          f"{passes['tick_ms']:.0f} ms, {passes['batch']} "
          f"HTTP calls {passes['http_ms']:.0f} ms, {passes['batch']} records "
          f"{passes['record_ms']:.0f} ms = {passes['jobs_per_second']:,.0f} jobs/s")


def _print_steady(figures: dict[str, Any], jobs: int, seconds: float) -> None:
    print(f"steady, {jobs:,} jobs every second for {seconds:g} s (missed and lateness: first "
          "and last second ignored; CPU per fired job: user + system CPU of the serving "
          "process tree from idle to the last arrival, over the executions that arrived):")
    rows = [(label, figures[key]) for _phase, key, label in STEADY_RUNS if key in figures]
    if all("skipped" in row for _label, row in rows):
        for label, row in rows:
            print(f"  {label}: skipped, {row['skipped']}")
        return
    print(f"  {'runner':<22}{'expected':>10}{'fired':>10}{'missed':>9}{'dups':>6}"
          f"{'p50 late':>10}{'p99 late':>10}{'max late':>10}{'CPU/job':>10}{'cpu%':>6}"
          f"{'machine%':>9}{'RSS max':>9}")
    for label, row in rows:
        if "skipped" in row:
            print(f"  {label:<22}skipped: {row['skipped']}")
            continue
        on_time = row["window_received"] > 0
        late = [_fmt_ms(row[k]) if on_time else "-" for k in ("p50_ms", "p99_ms", "max_ms")]
        per_job, cpu = row["cpu_us_per_fired"], row["process_cpu_percent"]
        print(f"  {label:<22}{row['expected']:>10,}{row['received']:>10,}{row['missed']:>9,}"
              f"{row['duplicates']:>6}{late[0]:>10}{late[1]:>10}{late[2]:>10}"
              f"{'-' if per_job is None else f'{per_job:,.0f} us':>10}"
              f"{'-' if cpu is None else f'{cpu:.0f}':>6}{row['machine_busy_percent']:>9.0f}"
              f"{row['rss_max_mib']:>5.0f} MiB")
    for label, row in rows:
        if "skipped" in row:
            continue
        print(f"  {label}: {row['per_second']:,.0f} fired/s; window "
              f"{row['window_received']:,} of {row['window_expected']:,}; missed in "
              f"{row['jobs_missing_any']:,} jobs; executions {row['executions']}; RSS "
              f"anonymous {row['rss_anon_max_mib']} MiB"
              + (f"; metrics counted {row['metrics_attempts']:,.0f} attempts"
                 if "metrics_attempts" in row else ""))
    notes = ["one engine's process"]
    if "api_workers" in figures.get("steady_all", {}):
        notes.append(f"serve --role all: its whole tree (gunicorn master, "
                     f"{figures['steady_all']['api_workers']} workers, engine)")
    if "processes" in figures.get("steady_nodes", {}):
        notes.append("2 engines: the larger one")
    print(f"  RSS max: {'; '.join(notes)}. Beyond the anonymous part it is file-backed "
          "(libraries, SQLite's memory-mapped database)")
    nodes = figures.get("steady_nodes")
    if nodes and "skipped" not in nodes:
        split = ", ".join(f"{name} {count:,}"
                          for name, count in sorted(nodes["executions_by_node"].items()))
        print(f"  2 engines: executions per node {split}; CPU seconds per engine "
              f"{nodes['per_process_cpu_seconds']} over the run")
    _print_scaling(figures.get("steady_scaling"))


def _print_scaling(scaling: dict[str, Any] | None) -> None:
    if not scaling or "skipped" in scaling:
        return

    def side(row: dict[str, Any]) -> str:
        missed = "none missed" if row["missed"] == 0 else f"{row['missed']:,} missed"
        per_job = row["cpu_us_per_fired"]
        return (f"{row['per_second']:,}/s ({missed}, p99 {_fmt_ms(row['p99_ms'])}, "
                f"{'-' if per_job is None else f'{per_job:,.0f}'} us CPU per job)")

    one, two = scaling["1_engine"], scaling["2_engines"]
    print(f"  scaling with nodes, same run, {scaling['offered_per_second']:,}/s offered: "
          f"1 engine: {side(one)}, 2 engines: {side(two)}: {scaling['ratio']:.2f}x the rate, "
          f"{scaling['p99_ratio']:.2f}x the p99")
    kept = {(True, True): "both kept up (none missed, p99 < {goal}): the offered load, not "
            "the engines, bounds the rate ratio; raise --steady-jobs to find where one "
            "engine stops keeping up",
            (False, True): "2 engines kept up (none missed, p99 < {goal}) with a load that "
            "1 engine did not",
            (True, False): "1 engine kept up (none missed, p99 < {goal}), 2 engines did not",
            (False, False): "neither kept up (kept up: none missed and p99 < {goal})"}
    print("  " + kept[one["kept_up"], two["kept_up"]].format(goal=f"{STEADY_P99_MS:g} ms"))


def _print_scale(scale: dict[str, Any]) -> None:
    print("scale (same firing rate at both sizes; ticks timed in this process):")
    print(f"  {'stored':>11}{'fired':>15}{'p99 late':>10}{'RSS max':>10}{'tick 500':>10}"
          f"{'per job':>9}{'idle tick':>10}{'wakeup':>8}{'claim 500':>10}{'insert':>8}")
    for row in scale.values():
        ticks = row["ticks"]
        print(f"  {row['stored_jobs']:>11,}{row['received']:>8,}/{row['due_in_run']:<7,}"
              f"{_fmt_ms(row['p99_ms']):>10}{row['rss_max_mib']:>6.0f} MiB"
              f"{ticks['tick_ms']:>7.0f} ms{ticks['tick_us_per_job']:>6.0f} us"
              f"{ticks['idle_tick_ms']:>7.1f} ms{ticks['next_wakeup_ms']:>5.1f} ms"
              f"{ticks['claim_ms']:>7.0f} ms{row['insert_seconds']:>7.0f}s")


def _print_queues(rows: dict[str, Any]) -> None:
    print("queues (messages due at once; first to last at the broker):")
    print(f"  {'broker':<8}{'messages':>10}{'engine':>12}{'raw client':>12}{'engine CPU':>12}"
          f"{'history':>10}")
    for kind, row in rows.items():
        print(f"  {kind:<8}{row['received']:>10,}{row['per_second']:>10,}/s"
              f"{row['raw_per_second']:>10,}/s{row['process_cpu_percent'] or 0:>11.0f}%"
              f"{row['history_after_due_s']:>9.1f}s")


def print_report(results: dict[str, Any], path: Path = RESULTS_FILE) -> None:
    """The tables of figures and goals."""
    machine, config = results["machine"], results["config"]
    print()
    print(f"Firing benchmark: {config['jobs']:,}-job burst, {config['steady_jobs']:,} jobs "
          f"every second for {config['steady_seconds']:g} s, {config['scale_jobs']:,} stored "
          f"jobs for {config['scale_seconds']:g} s{' (quick)' if config['quick'] else ''}"
          f"{' (tiny)' if config.get('tiny') else ''}")
    print(f"machine: {machine['cores']} cores ({machine['cpu']}), {machine['platform']}, "
          f"Python {machine['python']}; SQLAlchemy {machine['sqlalchemy']}, httpx "
          f"{machine['httpx']} (httpcore {machine['httpcore']}, anyio {machine['anyio']}), "
          f"APScheduler {machine['apscheduler']}")
    code, end = results["code"], results["code_at_end"]
    print(f"code: {code['commit']} {code['subject'][:70]}"
          f"{' + uncommitted changes in scheduler/' if code['changed'] else ''}")
    if (end["scheduler_tree"], end["changed"]) != (code["scheduler_tree"], code["changed"]):
        print(f"WARNING: scheduler/ changed during the run (now {end['commit']}); the figures "
              "may mix versions of the engine")
    print(f"engine: batch {config['engine_batch']}, max sleep "
          f"{config['engine_max_sleep_seconds']:g} s; engine, database, receiver and "
          "clients share the same cores")
    for figures in results["databases"].values():
        print(f"\n== {figures['version']} ==")
        issues: dict[str, list[str]] = {}
        if "throughput" in figures:
            _print_burst(figures["throughput"], config["jobs"])
            issues["engine, burst"] = figures["throughput"]["engine"]["log_issues"]
            issues["apscheduler"] = figures["throughput"]["apscheduler"]["log_issues"]
            if "apscheduler_asyncio" in figures["throughput"]:
                issues["apscheduler, asyncio"] = \
                    figures["throughput"]["apscheduler_asyncio"]["log_issues"]
        if any(key in figures for _phase, key, _label in STEADY_RUNS):
            _print_steady(figures, config["steady_jobs"], config["steady_seconds"])
            for _phase, key, label in STEADY_RUNS:
                if key in figures and "skipped" not in figures[key]:
                    issues[f"{label}, steady"] = figures[key]["log_issues"]
        if "queues" in figures:
            _print_queues(figures["queues"])
            for kind, row in figures["queues"].items():
                issues[f"engine, {kind} messages"] = row["log_issues"]
        if "scale" in figures:
            _print_scale(figures["scale"])
            for row in figures["scale"].values():
                issues[f"engine, {row['stored_jobs']:,} stored"] = row["log_issues"]
        print(f"  {'goal':<52}{'target':>10}{'measured':>26}  verdict")
        for item in figures["goals"]:
            verdict = "PASS" if item["pass"] else "FAIL"
            print(f"  {item['goal']:<52}{item['target']:>10} {item['measured']:>30}  {verdict}")
        for name, lines in issues.items():
            if lines:
                print(f"  {name}: the log reported")
                for line in lines[:8]:
                    print(f"    {line[:160]}")
    for key, summary in (results.get("profiles") or {}).items():
        if not summary:
            continue
        print(f"\npy-spy --gil, engine during {key} (shares of samples holding the GIL):")
        for kind in ("stages", "self", "inclusive"):
            print("  engine stages:" if kind == "stages" else f"  top frames by {kind} time:")
            for frame, share in summary.get(kind, [])[:12]:
                print(f"    {share:5.1f}%  {frame}")
    print(f"\nresults written to {path}")

def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, help="one-shot jobs of the burst (10,000)")
    parser.add_argument("--steady-jobs", type=int,
                        help="jobs recurring every second, each steady phase (5,000)")
    parser.add_argument("--steady-seconds", type=float,
                        help="length of each steady phase (60)")
    parser.add_argument("--scale-jobs", type=int, help="stored jobs of the scale phase (1M)")
    parser.add_argument("--scale-seconds", type=float, help="engine run at scale (60)")
    parser.add_argument("--queue-messages", type=int,
                        help="messages due at once to Redis and to RabbitMQ (10,000)")
    parser.add_argument("--databases", default="sqlite,postgresql",
                        help="comma-separated: sqlite, postgresql")
    parser.add_argument("--quick", action="store_true",
                        help="burst of 1,000, steady phases 1,000 jobs for 10 s, scale "
                        "100,000 jobs for 20 s")
    parser.add_argument("--tiny", action="store_true",
                        help="every phase a few seconds long, to check that the benchmark "
                        "runs (its figures mean nothing)")
    parser.add_argument("--phases", default=",".join(PHASES),
                        help=f"comma-separated: {', '.join(PHASES)} (default: all)")
    parser.add_argument("--batch", type=int, help="engine batch (default: the engine's)")
    parser.add_argument("--max-sleep", type=float, help="engine max sleep, seconds")
    parser.add_argument("--profile", action="store_true",
                        help="sample the engine with py-spy during the burst and steady phases")
    parser.add_argument("--keep", action="store_true", help="keep the temporary home")
    parser.add_argument("--results", type=Path, default=RESULTS_FILE,
                        help="where to write the results as JSON (bench/results-fire.json)")
    parser.add_argument("--metrics", action="store_true",
                        help="engines serve their Prometheus metrics, scraped before each "
                        "stops: compare with a run without")
    args = parser.parse_args(argv)
    if args.quick and args.tiny:
        parser.error("--quick and --tiny do not go together")
    for key, value in (TINY if args.tiny else QUICK if args.quick else DEFAULTS).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    args.databases = database_kinds(parser, args.databases)
    args.phases = [name.strip() for name in args.phases.split(",") if name.strip()]
    if not set(args.phases) <= set(PHASES) or not args.phases:
        parser.error(f"--phases takes {', '.join(PHASES)}")
    if min(args.jobs, args.steady_jobs, args.scale_jobs) < 1 or args.steady_seconds < 3 \
            or args.scale_seconds < 1 or args.scale_jobs < 200:
        parser.error("need positive job counts, --steady-seconds >= 3, --scale-jobs >= 200")
    return args


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; 0 when it ran (goals may still fail), 1 when it could not."""
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, lambda _signum, _frame: sys.exit(143))
    env = service_environment()
    workdir = Path(tempfile.mkdtemp(prefix="scheduler-fire-"))
    bench = Bench(args, workdir, env)
    results: dict[str, Any] | None = None
    began = time.monotonic()
    try:
        results = bench.run()
    except (BenchError, OSError, RuntimeError) as exc:
        print(f"\nbench failed: {exc}", file=sys.stderr)
    finally:
        bench.close()
        if args.keep:
            print(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    if results is None:
        return 1
    results["config"]["wall_seconds"] = round(time.monotonic() - began)
    write_results(args.results, results)
    print_report(results, args.results)
    print(f"wall time {results['config']['wall_seconds']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
