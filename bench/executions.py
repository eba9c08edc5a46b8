"""Benchmark of executions by request: how soon a run-now call reaches its target, and how
soon a canceled call in flight is cut off.

    .venv/bin/python bench/executions.py [--quick] [--runs 1000] [--seconds 10]
        [--cancels 200] [--databases sqlite,postgresql] [--keep]

On each database, a fresh home (SQLite: one `scheduler serve --role all`; PostgreSQL: a schema
made for the run and dropped at its end, one `--role api` process and one `--role engine`
process on the same home, so the engine is in a process of its own) and one target: a
loopback HTTP/1.1 server in a process of its own that notes, on CLOCK_MONOTONIC (system-wide
on Linux, so comparable with this process's `time.monotonic`), when each call arrived and,
on `/hold`, when the caller closed the connection (it never answers there):

1. Run now: one job, not due for decades, and --runs `POST .../jobs/{id}/run` spread evenly
   over --seconds from a few client threads with keep-alive sessions, each sent at its planned
   instant. Latency: from the `202` reaching the client to the call reaching the target,
   matched on `x-ms-execution-tag` (the execution id of the 202's body); the job's body is
   `{{execution.id}}`, so the target checks the placeholder as well.
2. Baseline, the path a user had before run-now: --runs new one-shot jobs `PUT` with
   startTime now, at the same pace; from the `201` to the call at the target.
3. Cancel: a job whose target holds the call; --cancels times, spread over --seconds, a few
   at once: run it, wait until the target has the call, `GET` the execution for its ETag,
   `PATCH {"status": "canceled"}` with `If-Match`, and measure from the `204` to the target
   seeing its connection closed.

Goal: p99 below 100 ms for run now and for cancel. It prints a table, writes
bench/results-executions.json and stops every process it started and removes every
temporary home and schema, also on error or Ctrl-C. --quick: 300 runs over 5 s, 50 cancels.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing as mp
import os
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as `python bench/executions.py`: make `bench` importable
    sys.path.insert(0, str(ROOT))

import requests  # noqa: E402

from bench.harness import (  # noqa: E402
    BenchError,
    ServerProcess,
    cpu_times,
    free_port,
    machine_info,
    percentile,
    process_tree,
    results_argument,
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
from scheduler.domain.durations import format_datetime  # noqa: E402

RESULTS_FILE = ROOT / "bench" / "results-executions.json"
# The baseline makes one job per run: more than P20Premium's 1,000 with the other two. Each
# phase runs one job by hand hundreds of times a second, far past any plan's allowance.
PLAN_TOML = ('\n[plans.Bench]\nmax_job_count = {count}\nmax_recurrence = "PT1M"\n'
             "run_now_burst = 1000000\nmax_open_runs = 1000000\n")
RUN_PATH, DUE_PATH, HOLD_PATH = "/run", "/due/", "/hold"
RUN_JOB, HOLD_JOB = "runnow", "held"
NEVER = "2099-01-01T00:00:00Z"
PLACEHOLDER_BODY = "{{execution.id}}"
RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
CLIENTS = 8  # threads sending the paced requests, one keep-alive session each
CANCEL_CLIENTS = 4  # cancels under way at once, at most
WARMUP = 10  # run-now calls and due jobs sent before measuring, not counted
DRAIN_SECONDS = 30.0  # longest wait for the last calls of a phase
WAIT_SECONDS = 30.0  # longest wait for one held call to arrive or be closed
GOAL_P99_MS = 100.0
DEFAULTS = {"runs": 1000, "seconds": 10.0, "cancels": 200}
QUICK = {"runs": 300, "seconds": 5.0, "cancels": 50}


# --- the target: its own process ------------------------------------------------------------

class TargetProtocol(asyncio.Protocol):
    """One connection to the target: answers `200` at once and keeps the connection, except
    on `/hold`, which it never answers and whose close it reports."""

    def __init__(self, events: Connection) -> None:
        self.events = events
        self.buffer = b""
        self.held: str | None = None
        self.reported = False
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Keep the transport; no Nagle delay on the answers."""
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        """Report each complete request the moment its last bytes came, and answer it."""
        moment = time.monotonic()
        if self.held is not None:
            return
        self.buffer += data
        while (end := self.buffer.find(b"\r\n\r\n")) >= 0:
            lines = self.buffer[:end].split(b"\r\n")
            headers = {}
            for line in lines[1:]:
                name, _, value = line.partition(b":")
                headers[name.strip().lower()] = value.strip()
            length = int(headers.get(b"content-length", b"0"))
            if len(self.buffer) < end + 4 + length:
                return
            body = self.buffer[end + 4:end + 4 + length]
            self.buffer = self.buffer[end + 4 + length:]
            parts = lines[0].split(b" ")
            path = parts[1].decode(errors="replace") if len(parts) > 1 else ""
            tag = headers.get(b"x-ms-execution-tag", b"").decode(errors="replace")
            self.events.send(("arrived", tag, path, body.decode(errors="replace"), moment))
            if path.startswith(HOLD_PATH):
                self.held = tag
                return
            assert self.transport is not None
            self.transport.write(RESPONSE)

    def eof_received(self) -> bool:
        """The caller closed its side: report a held call's end."""
        self._report_close()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        """Closed or reset: report a held call's end, if not yet done."""
        self._report_close()

    def _report_close(self) -> None:
        if self.held is not None and not self.reported:
            self.reported = True
            self.events.send(("closed", self.held, HOLD_PATH, "", time.monotonic()))


async def serve_target(events: Connection) -> None:
    """Listen on a free loopback port, say which, and serve until the bench says stop or
    goes away."""
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: TargetProtocol(events), "127.0.0.1", 0,
                                      backlog=1024)
    events.send(("port", "", "", "", float(server.sockets[0].getsockname()[1])))
    done: asyncio.Future[None] = loop.create_future()

    def parent_gone() -> None:
        if not done.done():
            done.set_result(None)
    loop.add_reader(events.fileno(), parent_gone)
    await done
    server.close()


def target_main(events: Connection) -> None:
    """The target process's entry point."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C: the bench stops it
    asyncio.run(serve_target(events))


@dataclass(frozen=True)
class Arrival:
    """One call as the target saw it."""

    tag: str
    path: str
    body: str
    at: float


class Target:
    """The target process and, collected by a reader thread here, what it saw."""

    def __init__(self) -> None:
        context = mp.get_context("spawn")
        self.conn, child = context.Pipe(duplex=True)
        self.process = context.Process(target=target_main, args=(child,), daemon=True,
                                       name="bench-target")
        self.process.start()
        child.close()
        if not self.conn.poll(60):
            self.close()
            raise BenchError("the target process did not start")
        self.port = int(self.conn.recv()[4])
        self.by_tag: dict[str, list[Arrival]] = defaultdict(list)
        self.by_path: dict[str, list[Arrival]] = defaultdict(list)
        self.closed: dict[str, float] = {}
        self.changed = threading.Condition()
        self.reader = threading.Thread(target=self._read, daemon=True, name="target-reader")
        self.reader.start()

    def url(self, path: str) -> str:
        """A URL on the target."""
        return f"http://127.0.0.1:{self.port}{path}"

    def _read(self) -> None:
        while True:
            try:
                kind, tag, path, body, moment = self.conn.recv()
            except (EOFError, OSError):
                return
            with self.changed:
                if kind == "arrived":
                    arrival = Arrival(tag, path, body, moment)
                    self.by_tag[tag].append(arrival)
                    self.by_path[path].append(arrival)
                elif kind == "closed":
                    self.closed.setdefault(tag, moment)
                self.changed.notify_all()

    def wait(self, condition: Callable[[], bool], seconds: float) -> bool:
        """Wait until `condition` (read under the lock) holds; whether it did."""
        with self.changed:
            return self.changed.wait_for(condition, seconds)

    def forget(self) -> None:
        """Forget what it saw so far: a new database's jobs call the same paths."""
        with self.changed:
            self.by_tag.clear()
            self.by_path.clear()
            self.closed.clear()

    def close(self) -> None:
        """Tell the process to stop, and make sure it did."""
        with contextlib.suppress(OSError):
            self.conn.send("stop")
        self.process.join(5)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(5)
        if hasattr(self, "reader"):
            self.reader.join(5)
        self.conn.close()


# --- the service ----------------------------------------------------------------------------

@dataclass
class Deployment:
    """The service on one database: its home, processes and how to reach its jobs."""

    database: str
    home: Path
    info: dict[str, Any]
    port: int
    servers: list[ServerProcess] = field(default_factory=list)

    @property
    def base_url(self) -> str:
        """`https://127.0.0.1:PORT`."""
        return f"https://127.0.0.1:{self.port}"

    @property
    def jobs_url(self) -> str:
        """The jobs of collection jc1 in cloud service cs1."""
        return (f"{self.base_url}/{self.info['subscriptionId']}/cloudservices/cs1/resources/"
                "scheduler/~/jobcollections/jc1/jobs")

    def session(self) -> requests.Session:
        """A keep-alive session trusting the home CA and showing the admin certificate (not
        this machine's REQUESTS_CA_BUNDLE: trust_env off)."""
        session = requests.Session()
        session.trust_env = False
        session.verify = str(self.info["caCert"])
        session.cert = str(self.info["clientCert"])
        return session

    def cpu_seconds(self) -> dict[str, float | None]:
        """CPU seconds used so far by each server process and its children; of `--role all`,
        its engine process apart from the API (the master and its workers)."""
        used: dict[str, float | None] = {}
        for server in self.servers:
            total = tree_cpu_seconds(server.process.pid)
            engine = next((pid for pid in process_tree(server.process.pid)[1:]
                           if b"engine" in _cmdline(pid)), None)
            if engine is None or total is None:
                used[server.name] = total
                continue
            engine_cpu = tree_cpu_seconds(engine) or 0.0
            used[f"{server.name} (engine)"] = engine_cpu
            used[f"{server.name} (api)"] = total - engine_cpu
        return used


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""

def wait_operation(session: requests.Session, deployment: Deployment, response: Any,
                   timeout: float = 60) -> None:
    """Poll the asynchronous operation a 202 started until it succeeded."""
    if response.status_code != 202:
        raise BenchError(f"{response.request.method} {response.url} answered "
                         f"{response.status_code}: {response.text[:500]}")
    url = (f"{deployment.base_url}/{deployment.info['subscriptionId']}/operations/"
           f"{response.headers['x-ms-request-id']}")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = session.get(url)
        if "<Status>Succeeded</Status>" in status.text:
            return
        if "<Status>Failed</Status>" in status.text:
            raise BenchError(f"operation failed: {status.text[:500]}")
        time.sleep(0.05)
    raise BenchError(f"operation {url} did not finish in {timeout} s")


def job_document(url: str, start: str) -> dict[str, Any]:
    """A one-shot job POSTing its execution id to `url`, without retries."""
    return {"startTime": start, "action": {
        "type": "http", "request": {"uri": url, "method": "POST",
                                    "headers": {"Content-Type": "text/plain"},
                                    "body": PLACEHOLDER_BODY},
        "retryPolicy": {"retryType": "none"}}}


def create_collection(deployment: Deployment, target: Target) -> None:
    """Cloud service cs1, collection jc1 on the Bench plan, the run-now and the held job."""
    session = deployment.session()
    try:
        service = (f"{deployment.base_url}/{deployment.info['subscriptionId']}/"
                   "cloudservices/cs1")
        wait_operation(session, deployment, session.put(service, data=CLOUD_SERVICE_XML))
        wait_operation(session, deployment, session.put(
            f"{service}/resources/scheduler/jobcollections/jc1", data=COLLECTION_XML))
        for job, path in ((RUN_JOB, RUN_PATH), (HOLD_JOB, HOLD_PATH)):
            made = session.put(f"{deployment.jobs_url}/{job}",
                               json=job_document(target.url(path), NEVER))
            if made.status_code != 201:
                raise BenchError(f"PUT job {job} answered {made.status_code}: {made.text}")
    finally:
        session.close()


# --- paced requests -------------------------------------------------------------------------

@dataclass
class Sent:
    """One request of a paced phase: when it was planned, sent and answered."""

    index: int
    planned: float
    sent: float
    answered: float
    status: int
    key: str  # the execution id (run now) or the job id (baseline)
    error: str = ""
    answered_wall: float = 0.0  # time.time() with `answered`, to compare with the service's


def paced(deployment: Deployment, count: int, seconds: float, clients: int,
          call: Callable[[requests.Session, int, float], Any]) -> list[Any]:
    """`call(session, index, planned)` `count` times at even intervals over `seconds`, from
    `clients` threads with a keep-alive session each; each call starts at its planned
    instant, or at once when every thread was busy then."""
    interval = seconds / count
    begin = time.monotonic() + 0.2
    results: list[Any] = [None] * count
    errors: list[BaseException] = []
    lock, upcoming = threading.Lock(), iter(range(count))

    def work() -> None:
        session = deployment.session()
        try:
            while not errors:
                with lock:
                    index = next(upcoming, None)
                if index is None:
                    return
                planned = begin + index * interval
                delay = planned - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                results[index] = call(session, index, planned)
        except BaseException as exc:  # handed to the main thread
            errors.append(exc)
        finally:
            session.close()

    threads = [threading.Thread(target=work, daemon=True, name=f"client-{n}")
               for n in range(min(clients, count))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise BenchError(f"a client failed: {errors[0]!r}") from errors[0]
    return results


def run_now(jobs_url: str) -> Callable[[requests.Session, int, float], Sent]:
    """A paced call that runs the run-now job."""
    def call(session: requests.Session, index: int, planned: float) -> Sent:
        sent = time.monotonic()
        response = session.post(f"{jobs_url}/{RUN_JOB}/run", json={"parameters": {"n": index}})
        answered, wall = time.monotonic(), time.time()
        ok = response.status_code == 202
        return Sent(index, planned, sent, answered, response.status_code,
                    response.json()["id"] if ok else "", "" if ok else response.text[:300],
                    wall)
    return call


def put_due(jobs_url: str, url: str, prefix: str) -> Callable[[requests.Session, int, float],
                                                              Sent]:
    """A paced call that creates a one-shot job due now."""
    def call(session: requests.Session, index: int, planned: float) -> Sent:
        job = f"{prefix}{index:05d}"
        document = job_document(f"{url}{job}", format_datetime(datetime.now(UTC)))
        sent = time.monotonic()
        response = session.put(f"{jobs_url}/{job}", json=document)
        answered, wall = time.monotonic(), time.time()
        ok = response.status_code == 201
        return Sent(index, planned, sent, answered, response.status_code, job,
                    "" if ok else response.text[:300], wall)
    return call


def arrivals_by_key(target: Target, sent: list[Sent], by_job: bool) -> dict[str, list[Arrival]]:
    """The target's calls for each request's key: its execution tag, or its job's path."""
    with target.changed:
        if by_job:
            return {s.key: list(target.by_path.get(f"{DUE_PATH}{s.key}", [])) for s in sent}
        return {s.key: [a for a in target.by_tag.get(s.key, []) if a.path == RUN_PATH]
                for s in sent}


def drain(target: Target, sent: list[Sent], by_job: bool, seconds: float) -> float:
    """Wait until every answered request's call arrived (or `seconds` passed); how long."""
    began = time.monotonic()
    keys = [s.key for s in sent if s.key]

    def all_in() -> bool:
        if by_job:
            return all(f"{DUE_PATH}{key}" in target.by_path for key in keys)
        return all(key in target.by_tag for key in keys)

    target.wait(all_in, seconds)
    time.sleep(0.5)  # room for a duplicate to show up
    return time.monotonic() - began


def started_times(deployment: Deployment, job: str | None = None) -> dict[str, float]:
    """Each execution's `startTime` (when the engine pass that leased it began), in seconds
    since the epoch, by id: of one job, or of the whole collection."""
    url = deployment.jobs_url if job is None else f"{deployment.jobs_url}/{job}"
    url = url.removesuffix("/jobs") + "/executions"
    found: dict[str, float] = {}
    session = deployment.session()
    try:
        while True:
            page = session.get(url, params={"$top": 1000, "$skip": len(found)})
            if page.status_code != 200:
                raise BenchError(f"GET {url} answered {page.status_code}: {page.text[:300]}")
            documents = page.json()
            for document in documents:
                if document.get("startTime"):
                    found[document["id"]] = datetime.fromisoformat(
                        document["startTime"]).timestamp()
                else:
                    found[document["id"]] = float("nan")
            if len(documents) < 1000:
                return found
    finally:
        session.close()


def stats_ms(values: list[float]) -> dict[str, float]:
    """p50, p99, max, min and mean of seconds, in milliseconds."""
    ordered = sorted(values)
    if not ordered:
        return {"p50_ms": 0.0, "p99_ms": 0.0, "max_ms": 0.0, "min_ms": 0.0, "mean_ms": 0.0}
    return {"p50_ms": round(percentile(ordered, 0.50) * 1000, 2),
            "p99_ms": round(percentile(ordered, 0.99) * 1000, 2),
            "max_ms": round(ordered[-1] * 1000, 2), "min_ms": round(ordered[0] * 1000, 2),
            "mean_ms": round(sum(ordered) / len(ordered) * 1000, 2)}


def paced_figures(target: Target, sent: list[Sent], by_job: bool, expected_status: int,
                  started: dict[str, float]) -> dict[str, Any]:
    """Latency from the answer to the call at the target, what went wrong, and the latency
    cut in two at the start of the engine pass that leased the execution."""
    arrivals = arrivals_by_key(target, sent, by_job)
    answered = [s for s in sent if s.status == expected_status]
    latencies = [arrivals[s.key][0].at - s.answered for s in answered if arrivals.get(s.key)]
    to_pass, in_pass = [], []
    for s in answered:
        if not arrivals.get(s.key):
            continue
        first = arrivals[s.key][0]
        began = started.get(first.tag, float("nan"))
        if began == began:  # not NaN
            to_pass.append(began - s.answered_wall)
            in_pass.append(first.at - s.answered - (began - s.answered_wall))
    return {
        **stats_ms(latencies),
        "n": len(latencies), "requests": len(sent), "errors": len(sent) - len(answered),
        "error_samples": [f"{s.status}: {s.error}" for s in sent if s.error][:5],
        "missing": sum(1 for s in answered if not arrivals.get(s.key)),
        "duplicates": sum(len(found) - 1 for found in arrivals.values() if len(found) > 1),
        "placeholder_mismatches": sum(1 for found in arrivals.values() for a in found
                                      if a.body != a.tag),
        "before_answer": sum(1 for value in latencies if value < 0),
        "request": stats_ms([s.answered - s.sent for s in sent]),
        "send_lag": stats_ms([max(0.0, s.sent - s.planned) for s in sent]),
        "answer_to_pass": stats_ms(to_pass),
        "pass_to_call": stats_ms(in_pass),
    }


# --- cancels --------------------------------------------------------------------------------

@dataclass
class Cancel:
    """One run of the held job and its cancel, as seen by the client and the target."""

    index: int
    planned: float
    answered: float  # the run's 202
    arrived: float  # the held call at the target
    status_seen: str  # by the GET before the cancel
    patch_sent: float
    patch_status: int
    patch_answered: float  # the 204
    closed: float | None  # the target saw the connection closed
    if_match_retries: int
    url: str


def cancel_once(target: Target, jobs_url: str) -> Callable[[requests.Session, int, float],
                                                           Cancel]:
    """A paced call: run the held job, wait for its call, cancel it, wait for the close."""
    def call(session: requests.Session, index: int, planned: float) -> Cancel:
        started = session.post(f"{jobs_url}/{HOLD_JOB}/run", json={"parameters": {"n": index}})
        answered = time.monotonic()
        if started.status_code != 202:
            raise BenchError(f"run of {HOLD_JOB} answered {started.status_code}: "
                             f"{started.text[:300]}")
        execution_id, url = started.json()["id"], started.headers["Location"]
        if not target.wait(lambda: execution_id in target.by_tag, WAIT_SECONDS):
            raise BenchError(f"held call {execution_id} did not reach the target")
        arrived = target.by_tag[execution_id][0].at
        retries = 0
        while True:
            document = session.get(url)
            patch_sent = time.monotonic()
            canceled = session.patch(url, json={"status": "canceled"},
                                     headers={"If-Match": document.headers["ETag"]})
            patch_answered = time.monotonic()
            if canceled.status_code != 412 or retries >= 3:
                break
            retries += 1  # the execution changed between GET and PATCH: read it again
        if canceled.status_code != 204:
            raise BenchError(f"cancel of {execution_id} answered {canceled.status_code}: "
                             f"{canceled.text[:300]}")
        target.wait(lambda: execution_id in target.closed, WAIT_SECONDS)
        return Cancel(index, planned, answered, arrived, str(document.json().get("status")),
                      patch_sent, canceled.status_code, patch_answered,
                      target.closed.get(execution_id), retries, url)
    return call


def cancel_figures(cancels: list[Cancel], final: Counter[str]) -> dict[str, Any]:
    """Latency from the 204 to the closed connection, and the rest of each cycle."""
    closed = [c for c in cancels if c.closed is not None]
    latencies = [c.closed - c.patch_answered for c in closed if c.closed is not None]
    return {
        **stats_ms(latencies),
        "n": len(latencies), "requests": len(cancels),
        "never_closed": len(cancels) - len(closed),
        "before_answer": sum(1 for value in latencies if value < 0),
        "status_before_cancel": dict(Counter(c.status_seen for c in cancels)),
        "status_after": dict(final),
        "if_match_retries": sum(c.if_match_retries for c in cancels),
        "patch_request": stats_ms([c.patch_answered - c.patch_sent for c in cancels]),
        "held_run_now": stats_ms([c.arrived - c.answered for c in cancels]),
    }


def final_statuses(deployment: Deployment, cancels: list[Cancel]) -> Counter[str]:
    """The status each canceled execution ends in, read back through the API."""
    session = deployment.session()
    try:
        return Counter(str(session.get(c.url).json().get("status")) for c in cancels)
    finally:
        session.close()


# --- the run --------------------------------------------------------------------------------

@dataclass
class Bench:
    """One run: its temporary directory, target, servers and schemas."""

    args: argparse.Namespace
    workdir: Path
    env: dict[str, str]
    target: Target | None = None
    deployments: list[Deployment] = field(default_factory=list)
    schemas: list[str] = field(default_factory=list)
    log_issues: dict[str, list[str]] = field(default_factory=dict)

    def run(self) -> dict[str, Any]:
        """Every database in turn; the results."""
        self.target = Target()
        print(f"target listening on 127.0.0.1:{self.target.port}", flush=True)
        results: dict[str, Any] = {"machine": machine_info(), "config": self._config(),
                                   "databases": {}}
        for database in self.args.databases:
            deployment = self.deploy(database)
            try:
                results["databases"][database] = self.measure(deployment)
            finally:
                self.stop(deployment)
        results["goals"] = goals(results["databases"])
        return results

    def _config(self) -> dict[str, Any]:
        args = self.args
        return {"runs": args.runs, "seconds": args.seconds, "cancels": args.cancels,
                "quick": args.quick, "databases": args.databases, "clients": CLIENTS,
                "cancel_clients": CANCEL_CLIENTS, "warmup": WARMUP,
                "goal_p99_ms": GOAL_P99_MS, "started": datetime.now(UTC).isoformat(),
                "load_average": os.getloadavg()}

    def deploy(self, database: str) -> Deployment:
        """A fresh home on `database` with its processes running."""
        env = {**self.env, "SCHEDULER_OUTBOUND_ALLOW_PRIVATE_NETWORKS": "true"}
        if database == "postgresql":
            schema, env["SCHEDULER_DATABASE_URL"] = new_postgres_schema("bench_exec")
            self.schemas.append(schema)
        home = self.workdir / f"home-{database}"
        info = init_home(home, ["localhost", "127.0.0.1"], env=env)
        with (home / "scheduler.toml").open("a") as config:
            config.write(PLAN_TOML.format(count=self.args.runs + 4 * WARMUP + 10))
        deployment = Deployment(database, home, info, free_port())
        self.deployments.append(deployment)
        roles = ("all",) if database == "sqlite" else ("api", "engine")
        for role in roles:
            name = f"{database}-{role}"
            print(f"starting scheduler serve --role {role} on {database}", flush=True)
            port = [] if role == "engine" else ["--port", str(deployment.port)]
            deployment.servers.append(start_process(
                name, serve_argv(home, role, *port), self.workdir / f"{name}.log", env,
                "scheduler ready", None if role == "engine" else deployment.port))
        assert self.target is not None
        create_collection(deployment, self.target)
        return deployment

    def measure(self, deployment: Deployment) -> dict[str, Any]:
        """Warm up, then the three phases; their figures."""
        args, target = self.args, self.target
        assert target is not None
        jobs = deployment.jobs_url
        started_load = os.getloadavg()
        target.forget()
        warm = paced(deployment, WARMUP, 1.0, CLIENTS, run_now(jobs))
        warm += paced(deployment, WARMUP, 1.0, CLIENTS,
                      put_due(jobs, target.url(DUE_PATH), "warm"))
        drain(target, warm[:WARMUP], False, DRAIN_SECONDS)
        drain(target, warm[WARMUP:], True, DRAIN_SECONDS)
        figures: dict[str, Any] = {}

        print(f"{deployment.database}: {args.runs} run-now requests over {args.seconds:g} s",
              flush=True)
        sent, meter = self.phase(deployment, lambda: paced(
            deployment, args.runs, args.seconds, CLIENTS, run_now(jobs)), False)
        figures["run_now"] = {**paced_figures(target, sent, False, 202,
                                              started_times(deployment, RUN_JOB)), **meter}

        print(f"{deployment.database}: {args.runs} due jobs over {args.seconds:g} s",
              flush=True)
        sent, meter = self.phase(deployment, lambda: paced(
            deployment, args.runs, args.seconds, CLIENTS,
            put_due(jobs, target.url(DUE_PATH), "due")), True)
        figures["baseline"] = {**paced_figures(target, sent, True, 201,
                                               started_times(deployment)), **meter}

        print(f"{deployment.database}: {args.cancels} cancels over {args.seconds:g} s",
              flush=True)
        began, cpu, busy = time.monotonic(), deployment.cpu_seconds(), cpu_times()
        cancels = paced(deployment, args.cancels, args.seconds, CANCEL_CLIENTS,
                        cancel_once(target, jobs))
        meter = self.meter(deployment, began, cpu, busy)
        figures["cancel"] = {**cancel_figures(cancels, final_statuses(deployment, cancels)),
                             **meter}
        figures["load_average"] = {"before": started_load, "after": os.getloadavg()}
        figures["processes"] = [server.name for server in deployment.servers]
        return figures

    def phase(self, deployment: Deployment, send: Callable[[], list[Sent]], by_job: bool
              ) -> tuple[list[Sent], dict[str, Any]]:
        """Send a paced phase, wait for its calls; what was sent and the CPU it took."""
        assert self.target is not None
        began, cpu, busy = time.monotonic(), deployment.cpu_seconds(), cpu_times()
        sent = send()
        meter = self.meter(deployment, began, cpu, busy)
        meter["drain_seconds"] = round(drain(self.target, sent, by_job, DRAIN_SECONDS), 2)
        return sent, meter

    @staticmethod
    def meter(deployment: Deployment, began: float, cpu: dict[str, float | None],
              busy: tuple[float, float]) -> dict[str, Any]:
        """Seconds, the servers' CPU % and the machine's busy % since `began`."""
        seconds = time.monotonic() - began
        now_busy, now_cpu = cpu_times(), deployment.cpu_seconds()
        servers = {}
        for name, before in cpu.items():
            after = now_cpu.get(name)
            servers[name] = None if before is None or after is None \
                else round((after - before) / seconds * 100, 1)
        machine = (now_busy[0] - busy[0]) / max(1.0, now_busy[1] - busy[1]) * 100
        return {"phase_seconds": round(seconds, 2), "server_cpu_percent": servers,
                "machine_busy_percent": round(machine, 1)}

    def stop(self, deployment: Deployment) -> None:
        """Stop a deployment's servers, newest first, keeping what their logs reported."""
        for server in reversed(deployment.servers):
            code = server.stop()
            issues = server.log_issues()
            if code not in (0, None):
                issues.append(f"exit status {code}")
            if issues:
                self.log_issues[server.name] = issues[:50]
        deployment.servers.clear()

    def close(self) -> None:
        """Stop everything still running and drop the schemas made for the run."""
        for deployment in self.deployments:
            self.stop(deployment)
        if self.target is not None:
            self.target.close()
            self.target = None
        drop_postgres_schemas(self.schemas)
        self.schemas.clear()


# --- the report -----------------------------------------------------------------------------

def goals(databases: dict[str, Any]) -> list[dict[str, Any]]:
    """Each goal with its measured value and verdict: p99 under 100 ms, nothing lost."""
    out = []
    for database, figures in databases.items():
        for key, label in (("run_now", "run now: 202 -> call at target"),
                           ("cancel", "cancel: 204 -> connection closed")):
            row = figures[key]
            complete = row["n"] == row["requests"]
            out.append({"database": database, "figure": key, "goal": label,
                        "target": f"p99 < {GOAL_P99_MS:g} ms", "p99_ms": row["p99_ms"],
                        "complete": complete,
                        "met": complete and row["p99_ms"] < GOAL_P99_MS})
    return out


def _row(database: str, label: str, row: dict[str, Any], n: str, goal: str) -> None:
    print(f"{database:<11}{label:<38}{row['p50_ms']:>9.1f}{row['p99_ms']:>9.1f}"
          f"{row['max_ms']:>9.1f}{n:>11}  {goal}")


def _verdict(row: dict[str, Any], complete: bool) -> str:
    met = complete and row["p99_ms"] < GOAL_P99_MS
    return f"p99 < {GOAL_P99_MS:g} ms: {'met' if met else 'not met'}"


def print_report(results: dict[str, Any], path: Path = RESULTS_FILE) -> None:
    """The table of figures and goals, then what each database's run saw besides."""
    machine, config = results["machine"], results["config"]
    print()
    print(f"Executions benchmark: {config['runs']:,} run-now requests and {config['runs']:,} "
          f"due jobs, each over {config['seconds']:g} s ({config['runs'] / config['seconds']:.0f}"
          f"/s, {config['clients']} client threads), {config['cancels']} cancels "
          f"({config['cancel_clients']} at most at once)")
    print(f"machine: {machine['cores']} cores ({machine['cpu']}), {machine['platform']}, "
          f"Python {machine['python']}; load average at start "
          f"{', '.join(f'{v:.2f}' for v in config['load_average'])}")
    print()
    header = (f"{'database':<11}{'figure':<38}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}"
              f"{'n':>11}  goal")
    print(header)
    print("-" * (len(header) + 22))
    for database, figures in results["databases"].items():
        run, base, cancel = figures["run_now"], figures["baseline"], figures["cancel"]
        run_ok = run["n"] == run["requests"] and run["duplicates"] == 0
        cancel_ok = cancel["n"] == cancel["requests"]
        _row(database, "run now: 202 -> call at target", run,
             f"{run['n']}/{run['requests']}", _verdict(run, run_ok))
        _row(database, "baseline: 201 of due job -> call", base,
             f"{base['n']}/{base['requests']}", "(reference)")
        _row(database, "cancel: 204 -> connection closed", cancel,
             f"{cancel['n']}/{cancel['requests']}", _verdict(cancel, cancel_ok))
        _row(database, "  run now: 202 -> engine pass began", run["answer_to_pass"], "", "")
        _row(database, "  run now: pass began -> call", run["pass_to_call"], "", "")
        _row(database, "  baseline: 201 -> engine pass began", base["answer_to_pass"], "",
             "")
        _row(database, "  baseline: pass began -> call", base["pass_to_call"], "", "")
        _row(database, "  run-now POST round trip", run["request"], "", "")
        _row(database, "  due-job PUT round trip", base["request"], "", "")
        _row(database, "  cancel PATCH round trip", cancel["patch_request"], "", "")
        _row(database, "  held run: 202 -> call at target", cancel["held_run_now"], "", "")
    print()
    for database, figures in results["databases"].items():
        run, base, cancel = figures["run_now"], figures["baseline"], figures["cancel"]
        print(f"{database} ({' + '.join(figures['processes'])}):")
        for label, row in (("run now", run), ("baseline", base)):
            print(f"  {label}: {row['errors']} errors, {row['missing']} missing, "
                  f"{row['duplicates']} duplicates, {row['placeholder_mismatches']} bodies "
                  f"not their execution id, {row['before_answer']} arrived before the "
                  f"answer; sent at {row['requests'] / row['phase_seconds']:.0f}/s, lag behind "
                  f"plan p50 {row['send_lag']['p50_ms']:.0f} ms, p99 "
                  f"{row['send_lag']['p99_ms']:.0f} ms; server CPU "
                  f"{row['server_cpu_percent']} %, machine {row['machine_busy_percent']} %")
            for sample in row["error_samples"]:
                print(f"    error: {sample}")
        print(f"  cancel: {cancel['never_closed']} never closed, {cancel['before_answer']} "
              f"closed before the 204; status before {cancel['status_before_cancel']}, after "
              f"{cancel['status_after']}; If-Match retries {cancel['if_match_retries']}; "
              f"server CPU {cancel['server_cpu_percent']} %, machine "
              f"{cancel['machine_busy_percent']} %")
        before, after = figures["load_average"]["before"], figures["load_average"]["after"]
        print(f"  load average before {', '.join(f'{v:.2f}' for v in before)}; after "
              f"{', '.join(f'{v:.2f}' for v in after)}")
    for name, issues in (results.get("server_log_issues") or {}).items():
        print(f"\n{name} log reported:")
        for line in issues[:20]:
            print(f"  {line}")
    print(f"\nresults written to {shown(path)}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="300 runs over 5 s and 50 cancels (unless given)")
    parser.add_argument("--runs", type=int, help="run-now requests, and due jobs (1000)")
    parser.add_argument("--seconds", type=float, help="spread of each phase (10)")
    parser.add_argument("--cancels", type=int, help="runs of the held job canceled (200)")
    parser.add_argument("--databases", default="sqlite,postgresql",
                        help="comma-separated: sqlite, postgresql")
    parser.add_argument("--keep", action="store_true", help="keep the temporary homes")
    results_argument(parser, RESULTS_FILE)
    args = parser.parse_args(argv)
    sizes = QUICK if args.quick else DEFAULTS
    for key, value in sizes.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    args.databases = [name.strip() for name in args.databases.split(",") if name.strip()]
    if not args.databases or set(args.databases) - {"sqlite", "postgresql"}:
        parser.error("--databases: sqlite, postgresql or both")
    if args.runs < 1 or args.cancels < 1 or args.seconds <= 0:
        parser.error("need --runs >= 1, --cancels >= 1, --seconds > 0")
    return args


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; 0 when it ran (goals may still be missed), 1 when it could not."""
    args = parse_args(argv)
    # SIGTERM unwinds like Ctrl-C, so the servers are stopped and the homes removed.
    signal.signal(signal.SIGTERM, lambda _signum, _frame: sys.exit(143))
    env = service_environment()
    workdir = Path(tempfile.mkdtemp(prefix="scheduler-bench-executions-"))
    bench = Bench(args, workdir, env)
    results: dict[str, Any] | None = None
    interrupted = False
    try:
        results = bench.run()
    except (BenchError, OSError, requests.RequestException) as exc:
        print(f"\nbench failed: {exc!r}", file=sys.stderr)
    except KeyboardInterrupt:
        print("\ninterrupted; stopping what was started", file=sys.stderr)
        interrupted = True
    finally:
        bench.close()
        if args.keep:
            print(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    if interrupted:
        return 130
    if results is None:
        for name, issues in bench.log_issues.items():
            print(f"{name} log reported:", *issues[:20], sep="\n  ", file=sys.stderr)
        return 1
    results["server_log_issues"] = bench.log_issues
    write_results(args.results, results)
    print_report(results, args.results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
