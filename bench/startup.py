"""Start-up time of the command line: how long `scheduler` takes before it does anything.

    .venv/bin/python bench/startup.py [--runs 20] [--no-serve]

Each of these runs --runs times, in turn, as a new process, timed from its start to its end:

  python -c pass          the interpreter alone (this venv's, so with its site packages):
                          the floor every other figure stands on;
  scheduler --help        the parser and every client command it names;
  jobs list, refused      a client command's whole start-up (profile, certificate, TLS
                          context) against a port nobody listens on: it fails at once;
  collections list        the same command against a real `scheduler serve --role api` of a
                          home made for the run, with the home's profile and --output json
                          (left out with --no-serve).

It prints the median and 90th percentile of each's wall time, in ms, the median's
difference from `python -c pass`, and the median CPU time (user and system) the process
used, which other work on the machine sways less; the client's goal is a median under
250 ms. It writes bench/results-startup.json and stops the server it started, also on error.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as `python bench/startup.py`: make `bench` importable
    sys.path.insert(0, str(ROOT))

from bench.harness import (  # noqa: E402
    BenchError,
    ServerProcess,
    free_port,
    percentile,
    results_argument,
    serve_argv,
    service_environment,
    shown,
    start_process,
    write_results,
)

BIN = Path(sys.executable).parent / "scheduler"
RESULTS_FILE = ROOT / "bench" / "results-startup.json"
GOAL_MS = 250.0
NOWHERE = "https://127.0.0.1:1"  # nothing listens there: the connection is refused at once


@dataclass(frozen=True)
class Command:
    """One command line to time, and the exit code it must end with."""

    name: str
    argv: list[str]
    exit_code: int

def clean_environment() -> dict[str, str]:
    """This process's environment without the service's variables, and with Python's
    bytecode cache on (as it is where the service is installed): the first run of each
    command writes what the others read."""
    return {k: v for k, v in service_environment().items() if k != "PYTHONDONTWRITEBYTECODE"}


def make_home(home: Path, port: int) -> dict[str, Any]:
    """`scheduler init` a home for the run, serving on `port`."""
    made = subprocess.run([str(BIN), "init", "--home", str(home), "--port", str(port),
                           "--json"], capture_output=True, text=True, timeout=120,
                          env=clean_environment(), check=False)
    if made.returncode != 0:
        raise BenchError(f"scheduler init failed: {made.stderr.strip()}")
    info: dict[str, Any] = json.loads(made.stdout)
    return info

def commands(info: dict[str, Any], served: bool) -> list[Command]:
    """What is timed."""
    found = [
        Command("python -c pass", [sys.executable, "-c", "pass"], 0),
        Command("scheduler --help", [str(BIN), "--help"], 0),
        Command("jobs list, refused", [
            str(BIN), "jobs", "list", "--url", NOWHERE, "--cert", info["clientCert"],
            "--ca", info["caCert"], "--subscription", info["subscriptionId"],
            "--cloud-service", "cs", "--collection", "jc"], 1),
    ]
    if served:
        found.append(Command("collections list, served", [
            str(BIN), "collections", "list", "--home", info["home"], "--output", "json"], 0))
    return found


def children_cpu_seconds() -> float:
    """The CPU time (user and system) of every child process waited for so far."""
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    return used.ru_utime + used.ru_stime


def time_once(command: Command) -> tuple[float, float]:
    """Run the command once: its wall time and its CPU time, in ms."""
    cpu_before = children_cpu_seconds()
    started = time.perf_counter()
    done = subprocess.run(command.argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                          env=clean_environment(), timeout=60, check=False)
    elapsed = (time.perf_counter() - started) * 1000
    if done.returncode != command.exit_code:
        raise BenchError(f"{command.name} ended with {done.returncode}, not "
                         f"{command.exit_code}: {done.stderr.decode().strip()}")
    return elapsed, (children_cpu_seconds() - cpu_before) * 1000


@dataclass
class Times:
    """The wall and CPU times of one command's runs, in ms."""

    wall: list[float]
    cpu: list[float]


def measure(timed: list[Command], runs: int) -> dict[str, Times]:
    """Each command `runs` times, in turn, after one run each to warm the file and
    bytecode caches."""
    for command in timed:
        time_once(command)
    times = {command.name: Times([], []) for command in timed}
    for _ in range(runs):
        for command in timed:
            wall, cpu = time_once(command)
            times[command.name].wall.append(wall)
            times[command.name].cpu.append(cpu)
    return times


def summary(times: dict[str, Times]) -> dict[str, dict[str, float]]:
    """Median and 90th percentile of the wall time, the median over `python -c pass`, and
    the median CPU time, in ms."""
    floor = statistics.median(times["python -c pass"].wall)
    return {name: {"median_ms": round(statistics.median(each.wall), 1),
                   "p90_ms": round(percentile(each.wall, 0.9), 1),
                   "over_python_ms": round(statistics.median(each.wall) - floor, 1),
                   "cpu_median_ms": round(statistics.median(each.cpu), 1)}
            for name, each in times.items()}


def report(figures: dict[str, dict[str, float]], runs: int) -> str:
    """The table printed at the end."""
    lines = [f"start-up of `scheduler`, {runs} runs each (goal for client commands: median "
             f"under {GOAL_MS:g} ms)",
             f"{'command':<28}{'median ms':>11}{'p90 ms':>9}{'over python':>13}"
             f"{'CPU ms':>9}"]
    for name, figure in figures.items():
        lines.append(f"{name:<28}{figure['median_ms']:>11.1f}{figure['p90_ms']:>9.1f}"
                     f"{figure['over_python_ms']:>13.1f}{figure['cpu_median_ms']:>9.1f}")
    return "\n".join(lines)


def machine_info() -> dict[str, Any]:
    """Cores, OS and Python."""
    return {"cores": os.cpu_count(), "platform": platform.platform(),
            "python": platform.python_version()}


def run(runs: int, served: bool) -> dict[str, Any]:
    """Make a home, serve it if asked, time the commands; the results."""
    workdir = Path(tempfile.mkdtemp(prefix="scheduler-startup-"))
    server: ServerProcess | None = None
    try:
        info = make_home(workdir / "home", free_port())
        if served:
            server = start_process("scheduler serve", serve_argv(workdir / "home", "api"),
                                   workdir / "serve.log", clean_environment(),
                                   "scheduler ready")
        times = measure(commands(info, served), runs)
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    return {"runs": runs, "machine": machine_info(), "figures": summary(times)}


def main() -> int:
    """Run the benchmark, print its table and write its results."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=20, help="runs of each command (20)")
    parser.add_argument("--no-serve", action="store_true",
                        help="leave out the command against a served home")
    results_argument(parser, RESULTS_FILE)
    args = parser.parse_args()
    if args.runs < 1:
        parser.error("--runs must be 1 or more")
    try:
        results = run(args.runs, not args.no_serve)
    except BenchError as exc:
        print(f"bench/startup.py: {exc}", file=sys.stderr)
        return 1
    print(report(results["figures"], args.runs))
    write_results(args.results, results)
    print(f"written to {shown(args.results)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
