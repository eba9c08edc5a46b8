"""The APScheduler 3 baselines of the firing benchmark, in two set-ups.

`prepare_jobs` stores date-trigger jobs in a `SQLAlchemyJobStore` table: one through
`add_job`, the others as copies of its row (same pickled state, own id and arguments), which
is what `add_job` would have written. `python -m bench.aps_runner --url U --table T [--setup
S]` then runs a scheduler over that store until SIGTERM; it prints `aps ready` once started.

- `threads` (stock): a `BackgroundScheduler` with APScheduler's default `ThreadPoolExecutor`;
  each job POSTs to the receiver with `http.client` over a keep-alive connection of its
  worker thread.
- `asyncio` (its fastest persistent set-up): an `AsyncIOScheduler` with the
  `AsyncIOExecutor`, each job a coroutine POSTing through one shared aiohttp session.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import importlib
import logging
import pickle
import signal
import threading
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

import aiohttp
from apscheduler.executors.asyncio import AsyncIOExecutor
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.schedulers.background import BackgroundScheduler

READY = "aps ready"
PATH = "/aps"
SETUPS = ("threads", "asyncio")
MISFIRE_GRACE_SECONDS = 3600
INSERT_BATCH = 2_000

_local = threading.local()


def post(port: int, expected: str, tag: str) -> None:
    """The job: one POST to the receiver, with the headers the engine's calls carry."""
    headers = {"Content-Type": "text/plain", "x-ms-scheduler-jobid": tag,
               "x-ms-scheduler-expected-execution-time": expected, "x-ms-execution-tag": tag}
    for attempt in range(2):
        conn: http.client.HTTPConnection | None = getattr(_local, "conn", None)
        if conn is None:
            conn = _local.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        try:
            conn.request("POST", PATH, body=b"x", headers=headers)
            response = conn.getresponse()
            response.read()
            if response.status != 200:
                raise RuntimeError(f"receiver answered {response.status}")
            return
        except (OSError, http.client.HTTPException):
            conn.close()
            _local.conn = None
            if attempt:
                raise


class SharedSession:
    """The one aiohttp session every job of the asyncio set-up posts through, made in the
    scheduler's event loop."""

    session: aiohttp.ClientSession | None = None


async def post_async(port: int, expected: str, tag: str) -> None:
    """The job of the asyncio set-up: the same POST, through the shared aiohttp session."""
    headers = {"Content-Type": "text/plain", "x-ms-scheduler-jobid": tag,
               "x-ms-scheduler-expected-execution-time": expected, "x-ms-execution-tag": tag}
    assert SharedSession.session is not None
    async with SharedSession.session.post(f"http://127.0.0.1:{port}{PATH}", data=b"x",
                                          headers=headers) as response:
        await response.read()
        if response.status != 200:
            raise RuntimeError(f"receiver answered {response.status}")


def job_function(setup: str) -> Callable[[int, str, str], Awaitable[None] | None]:
    """What each job of the set-up runs."""
    return post_async if setup == "asyncio" else post


def job_store(url: str, table: str) -> SQLAlchemyJobStore:
    """The job store of the baseline."""
    return SQLAlchemyJobStore(url=url, tablename=table)


def prepare_jobs(url: str, table: str, port: int, count: int, due: datetime,
                 setup: str = "threads") -> None:
    """Store `count` jobs, each running the set-up's job function once at `due`."""
    expected = due.astimezone(UTC).replace(tzinfo=None).isoformat() + "Z"
    store = job_store(url, table)
    scheduler = BackgroundScheduler(jobstores={"default": store}, timezone=UTC)
    scheduler.start(paused=True)
    try:
        scheduler.add_job(job_function(setup), "date", run_date=due, id="aps-0",
                          args=[port, expected, "aps-0"],
                          misfire_grace_time=MISFIRE_GRACE_SECONDS)
        with store.engine.begin() as conn:
            row = conn.execute(store.jobs_t.select().where(store.jobs_t.c.id == "aps-0")).one()
            state = pickle.loads(row.job_state)
            batch = []
            for number in range(1, count):
                tag = f"aps-{number}"
                state["id"], state["args"] = tag, (port, expected, tag)
                batch.append({"id": tag, "next_run_time": row.next_run_time,
                              "job_state": pickle.dumps(state, store.pickle_protocol)})
                if len(batch) == INSERT_BATCH:
                    conn.execute(store.jobs_t.insert(), batch)
                    batch = []
            if batch:
                conn.execute(store.jobs_t.insert(), batch)
    finally:
        scheduler.shutdown(wait=False)
        store.engine.dispose()


def left_in_store(url: str, table: str) -> int:
    """How many jobs APScheduler left in its store after a run; the store's table is then
    dropped."""
    store = job_store(url, table)
    try:
        with store.engine.begin() as conn:
            left = len(conn.execute(store.jobs_t.select().with_only_columns(
                store.jobs_t.c.id)).all())
        store.jobs_t.drop(store.engine)
    finally:
        store.engine.dispose()
    return left


def run_threads(url: str, table: str) -> None:
    """The stock set-up over the prepared store, until SIGTERM."""
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda _signum, _frame: stop.set())
    scheduler = BackgroundScheduler(
        jobstores={"default": job_store(url, table)},
        executors={"default": ThreadPoolExecutor()},
        job_defaults={"misfire_grace_time": MISFIRE_GRACE_SECONDS, "coalesce": False},
        timezone=UTC)
    scheduler.start()
    print(READY, flush=True)
    stop.wait()
    scheduler.shutdown(wait=False)


async def run_asyncio(url: str, table: str) -> None:
    """The asyncio set-up over the prepared store, until SIGTERM."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    # As many connections as the bench's bare clients keep: no pool limit of aiohttp's
    # default 100 holds the baseline back.
    connector = aiohttp.TCPConnector(limit=200)
    async with aiohttp.ClientSession(connector=connector, trust_env=False) as session:
        # The stored jobs name `bench.aps_runner:post_async`; run as `python -m`, this module
        # is `__main__`, so the session goes to the module the jobs are loaded from.
        stored_jobs_module = importlib.import_module("bench.aps_runner")
        stored_jobs_module.SharedSession.session = session
        scheduler = AsyncIOScheduler(
            jobstores={"default": job_store(url, table)},
            executors={"default": AsyncIOExecutor()},
            job_defaults={"misfire_grace_time": MISFIRE_GRACE_SECONDS, "coalesce": False},
            timezone=UTC, event_loop=loop)
        scheduler.start()
        print(READY, flush=True)
        await stop.wait()
        scheduler.shutdown(wait=False)


def main() -> None:
    """Run the chosen set-up over the prepared store until SIGTERM."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", required=True)
    parser.add_argument("--table", required=True)
    parser.add_argument("--setup", choices=SETUPS, default="threads")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if args.setup == "asyncio":
        asyncio.run(run_asyncio(args.url, args.table))
    else:
        run_threads(args.url, args.table)


if __name__ == "__main__":
    main()
