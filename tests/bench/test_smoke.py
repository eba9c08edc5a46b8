"""Every benchmark still runs: each at a tiny size, on SQLite, writing its results to a
temporary file (never the committed bench/results-*.json). Its figures mean nothing at that
size; what is checked is that it printed its table and wrote the results it describes."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.e2e


@dataclass(frozen=True)
class Run:
    """One benchmark's command line at a tiny size, a line of the table it prints, and the
    keys its results hold."""

    script: str
    args: tuple[str, ...]
    table: str
    keys: frozenset[str]


RUNS = {
    "api": Run("api.py", ("--jobs", "100", "--seconds", "1", "--rounds", "1",
                          "--concurrency", "1"),
               "(c) API / bare throughput", frozenset({"phases", "rounds", "goals"})),
    "api-writes": Run("api.py", ("--writes", "--jobs", "100", "--seconds", "1",
                                 "--concurrency", "2", "--databases", "sqlite"),
                      "PUT new job: rate at", frozenset({"config", "runs"})),
    "fire": Run("fire.py", ("--tiny", "--databases", "sqlite"),
                "burst: engine / APScheduler's best", frozenset({"config", "databases", "code"})),
    "executions": Run("executions.py", ("--runs", "20", "--seconds", "1", "--cancels", "5",
                                        "--databases", "sqlite"),
                      "run now: 202 -> call at target",
                      frozenset({"config", "databases", "goals"})),
    "history": Run("history.py", ("--jobs", "10", "--seconds", "10", "--databases", "sqlite"),
                   "tick ms by tenth", frozenset({"code", "databases"})),
    "ui": Run("ui.py", ("--jobs", "50", "--occurrences", "10", "--requests", "2"),
              "API GET jobs $top=100", frozenset({"config", "history", "targets", "code"})),
    "startup": Run("startup.py", ("--runs", "1"), "scheduler --help",
                   frozenset({"runs", "figures"})),
}


def run_benchmark(run: Run, results: Path) -> tuple[str, dict[str, Any]]:
    """Run one benchmark as its documentation says; what it printed, and its results."""
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / run.script), *run.args, "--results", str(results)],
        cwd=ROOT, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    loaded: dict[str, Any] = json.loads(results.read_text())
    return done.stdout, loaded


@pytest.mark.parametrize("name", list(RUNS))
def test_the_benchmark_runs_prints_its_table_and_writes_its_results(
        name: str, tmp_path: Path) -> None:
    run = RUNS[name]
    results = tmp_path / "results.json"
    committed = {path: path.stat().st_mtime for path in (ROOT / "bench").glob("results-*.json")}
    printed, written = run_benchmark(run, results)
    assert run.table in printed
    assert str(results) in printed  # it says where its results went
    assert run.keys <= set(written)
    assert {path: path.stat().st_mtime
            for path in (ROOT / "bench").glob("results-*.json")} == committed
