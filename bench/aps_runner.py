"""The APScheduler 3 baseline of the firing benchmark.

`prepare_jobs` stores date-trigger jobs in a `SQLAlchemyJobStore` table: one through
`add_job`, the others as copies of its row (same pickled state, own id and arguments), which
is what `add_job` would have written. `python -m bench.aps_runner --url U --table T` then runs
a stock `BackgroundScheduler` over that store, with APScheduler's default `ThreadPoolExecutor`,
until SIGTERM; it prints `aps ready` once started. Each job POSTs to the receiver with
`http.client` over a keep-alive connection of its worker thread.
"""

from __future__ import annotations

import argparse
import http.client
import logging
import pickle
import signal
import threading
from datetime import UTC, datetime

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.background import BackgroundScheduler

READY = "aps ready"
PATH = "/aps"
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


def job_store(url: str, table: str) -> SQLAlchemyJobStore:
    """The job store of the baseline."""
    return SQLAlchemyJobStore(url=url, tablename=table)


def prepare_jobs(url: str, table: str, port: int, count: int, due: datetime) -> None:
    """Store `count` jobs, each running `post` once at `due`."""
    expected = due.astimezone(UTC).replace(tzinfo=None).isoformat() + "Z"
    store = job_store(url, table)
    scheduler = BackgroundScheduler(jobstores={"default": store}, timezone=UTC)
    scheduler.start(paused=True)
    try:
        scheduler.add_job(post, "date", run_date=due, id="aps-0", args=[port, expected, "aps-0"],
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


def main() -> None:
    """Run the scheduler over the prepared store until SIGTERM."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", required=True)
    parser.add_argument("--table", required=True)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda _signum, _frame: stop.set())
    scheduler = BackgroundScheduler(
        jobstores={"default": job_store(args.url, args.table)},
        executors={"default": ThreadPoolExecutor()},
        job_defaults={"misfire_grace_time": MISFIRE_GRACE_SECONDS, "coalesce": False},
        timezone=UTC)
    scheduler.start()
    print(READY, flush=True)
    stop.wait()
    scheduler.shutdown(wait=False)


if __name__ == "__main__":
    main()
