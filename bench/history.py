"""Benchmark of the engine's tick and recording as executions and history pile up.

    .venv/bin/python bench/history.py [--jobs 500] [--seconds 600] [--databases sqlite,postgresql]
        [--quick] [--results FILE]

`bench/fire.py` runs each phase on a fresh database; a service that has run for a while keeps
up to `history_keep` (1,000) executions and history entries per job. Here --jobs jobs recur
every second, and for each of --seconds seconds of a simulated clock one batch is made into
executions and leased (`Engine.tick`), its attempts are given a successful outcome
(`Engine.finished`), and they are recorded (`Engine.record`), in this process, one after the
other, with no HTTP calls: the database work of a steady load, with every job's history
growing by one execution and one entry a second. The baseline is the same run's first
tenth of seconds, on the fresh database: the tick and the record of the last tenth are
printed beside it, with their ratio (1.0: flat in the history). It writes
bench/results-history.json (or --results); the temporary home and PostgreSQL schemas are
removed, also on error.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.harness import code_version, database_kinds, write_results  # noqa: E402
from bench.sites import (  # noqa: E402
    Backend,
    bench_home,
    create_jobs,
    http_document,
    now_utc,
    reschedule,
    settle,
    whole_second,
)
from scheduler.actions.base import Outcome  # noqa: E402
from scheduler.actions.http import HttpCaller  # noqa: E402
from scheduler.actions.registry import standard_actions  # noqa: E402
from scheduler.clock import SystemClock  # noqa: E402
from scheduler.engine.node import Engine  # noqa: E402
from scheduler.engine.options import engine_options  # noqa: E402
from scheduler.security.secrets import SecretBox  # noqa: E402
from scheduler.settings import EngineSettings  # noqa: E402

RESULTS_FILE = ROOT / "bench" / "results-history.json"
# Nothing listens there: no call is made, the outcome is given.
UNCALLED_URL = "http://127.0.0.1:9/history"
OUTCOME = Outcome(True, "Http Action - Response from host '127.0.0.1': 'OK' Response Headers: "
                  "Content-Length: 0", {"statusCode": 200})
TENTH = 10


def one_database(backend: Backend, box: SecretBox, jobs: int, seconds: int
                 ) -> dict[str, Any]:
    """Tick and record `jobs` recurring jobs once per simulated second; the time of each."""
    site = backend.new_site("history")
    settings = backend.settings

    def document(start: datetime) -> dict[str, Any]:
        return http_document(UNCALLED_URL, start, {"frequency": "second", "interval": 1})

    create_jobs(site, document(now_utc() + timedelta(days=1)), jobs, "history-", box, settings)
    start = reschedule(site, document(whole_second(now_utc() + timedelta(seconds=5))))
    settle(site)
    actions = standard_actions(HttpCaller(allow_private_networks=True))
    options = replace(engine_options(EngineSettings(), sqlite=site.db.is_sqlite), batch=jobs)
    engine = Engine(site.db, box, SystemClock(), "bench-history", actions, options)
    ticks, records = [], []
    for second in range(seconds):
        now = start + timedelta(seconds=second)
        began = time.perf_counter()
        claimed = engine.tick(now, now, jobs, surely_due=True).claimed
        ticked = time.perf_counter()
        if len(claimed) != jobs:
            raise RuntimeError(f"second {second}: the tick leased {len(claimed)} of {jobs}")
        finished = [engine.finished(execution, OUTCOME, now, now) for execution in claimed]
        made = time.perf_counter()
        engine.record(finished)
        ticks.append((ticked - began) * 1000)
        records.append((time.perf_counter() - made) * 1000)
    return figures(ticks, records, jobs)


def figures(ticks: list[float], records: list[float], jobs: int) -> dict[str, Any]:
    """Median tick and record, fresh (the first tenth of seconds) and last (the last tenth)."""
    part = max(1, len(ticks) // TENTH)

    def ms(values: list[float]) -> float:
        return round(statistics.median(values), 1)

    fresh = {"tick_ms": ms(ticks[:part]), "record_ms": ms(records[:part])}
    last = {"tick_ms": ms(ticks[-part:]), "record_ms": ms(records[-part:])}
    fresh_total, last_total = sum(fresh.values()), sum(last.values())
    return {
        "jobs": jobs, "seconds": len(ticks), "fresh": fresh, "last": last,
        "us_per_job_fresh": round(fresh_total * 1000 / jobs, 1),
        "us_per_job_last": round(last_total * 1000 / jobs, 1),
        "ratio": round(last_total / fresh_total, 2) if fresh_total else 0.0,
        "tick_ms_by_tenth": [ms(ticks[i:i + part]) for i in range(0, len(ticks), part)],
        "record_ms_by_tenth": [ms(records[i:i + part]) for i in range(0, len(records), part)],
    }


def print_report(results: dict[str, Any]) -> None:
    """One line per database: fresh against last, and the tick and record by tenth."""
    code = results["code"]
    print(f"\ncode: {code['commit']} {code['subject'][:70]}"
          f"{' + uncommitted changes in scheduler/' if code['changed'] else ''}")
    for kind, row in results["databases"].items():
        fresh, last = row["fresh"], row["last"]
        print(f"{kind}: {row['jobs']} jobs every second for {row['seconds']} s: "
              f"tick + record fresh {fresh['tick_ms']:.1f} + {fresh['record_ms']:.1f} ms "
              f"({row['us_per_job_fresh']:.0f} us a job), last tenth {last['tick_ms']:.1f} + "
              f"{last['record_ms']:.1f} ms ({row['us_per_job_last']:.0f} us a job): "
              f"{row['ratio']:.2f}x")
        print(f"  tick ms by tenth   {row['tick_ms_by_tenth']}")
        print(f"  record ms by tenth {row['record_ms_by_tenth']}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=500,
                        help="jobs recurring every second, one batch (500)")
    parser.add_argument("--seconds", type=int, help="simulated seconds (600; --quick 60)")
    parser.add_argument("--databases", default="sqlite,postgresql",
                        help="comma-separated: sqlite, postgresql")
    parser.add_argument("--quick", action="store_true", help="60 simulated seconds")
    parser.add_argument("--results", type=Path, default=RESULTS_FILE,
                        help="where to write the results as JSON (bench/results-history.json)")
    args = parser.parse_args(argv)
    if args.seconds is None:
        args.seconds = 60 if args.quick else 600
    args.databases = database_kinds(parser, args.databases)
    if args.jobs < 1 or args.seconds < TENTH:
        parser.error(f"need --jobs >= 1 and --seconds >= {TENTH}")
    return args


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and write its results."""
    args = parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="scheduler-history-"))
    try:
        home = workdir / "home"
        settings, box = bench_home(home, max(100_000, 2 * args.jobs))
        results: dict[str, Any] = {"code": code_version(), "databases": {}}
        for kind in args.databases:
            backend = Backend(kind, home, settings)
            try:
                print(f"{backend.version()}: {args.jobs} jobs, {args.seconds} simulated "
                      "seconds ...", flush=True)
                results["databases"][kind] = {"version": backend.version(),
                                              **one_database(backend, box, args.jobs,
                                                             args.seconds)}
            finally:
                backend.close()
        print_report(results)
        write_results(args.results, results)
        print(f"\nresults written to {args.results}")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
