"""What every benchmark shares: the processes it starts (`scheduler serve` of a temporary home
and the helpers beside it), how it meters their CPU and memory, the machine and code it ran on,
and where it writes its results.

The benchmarks are scripts (`python bench/NAME.py`); each starts its processes in a group of
their own, so that stopping one stops its children (gunicorn's workers, the engine of `serve
--role all`), and removes everything it made, also on error.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import re
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
SCHEDULER = BIN / "scheduler"
POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
READY = "scheduler ready"  # the line `scheduler serve` prints once it serves
RSS_INTERVAL = 0.25
IDLE_CPU_SECONDS = 0.05  # a started server is idle once it uses less than this per IDLE_STEP
IDLE_STEP = 0.5
TROUBLE_WORDS = ("error", "traceback", "exception", "critical", "timeout", "killed")
# gunicorn's logger is named `gunicorn.error`: its INFO lines report no trouble
NOT_TROUBLE = re.compile(r"\b(DEBUG|INFO) gunicorn\.error\b")


class BenchError(RuntimeError):
    """The benchmark could not run; the message says why."""


# --- small helpers -------------------------------------------------------------------------

def free_port() -> int:
    """A TCP port nobody listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def port_open(port: int) -> bool:
    """Whether something accepts connections on the loopback port."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def percentile(values: list[float], fraction: float) -> float:
    """Nearest-rank percentile of `values` (0 when empty)."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(fraction * len(ordered)) - 1))]


def service_environment() -> dict[str, str]:
    """This process's environment without the service's own variables, which a developer's
    shell may set: the processes a benchmark starts read only what it gives them."""
    return {key: value for key, value in os.environ.items() if not key.startswith("SCHEDULER_")}


def database_kinds(parser: argparse.ArgumentParser, value: str) -> list[str]:
    """The databases a `--databases` value names (comma-separated), or the parser's error."""
    kinds = [name.strip() for name in value.split(",") if name.strip()]
    if not set(kinds) <= {"sqlite", "postgresql"} or not kinds:
        parser.error("--databases takes sqlite and/or postgresql")
    return kinds


# --- results -------------------------------------------------------------------------------

def results_argument(parser: argparse.ArgumentParser, default: Path) -> None:
    """`--results FILE`: where the run writes its figures (the committed file by default)."""
    parser.add_argument("--results", type=Path, default=default,
                        help=f"where to write the results as JSON "
                        f"({default.relative_to(ROOT)})")


def write_results(path: Path, results: dict[str, Any]) -> None:
    """Write a run's results as indented JSON."""
    path.write_text(json.dumps(results, indent=2) + "\n")


def shown(path: Path) -> str:
    """`path` as a report names it: relative to the project when inside it."""
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def machine_info() -> dict[str, Any]:
    """Cores, CPU model, OS, Python and library versions."""
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions = {}
    for package in ("flask", "gunicorn", "sqlalchemy", "werkzeug"):
        versions[package] = package_version(package)
    return {
        "cores": os.cpu_count(),
        "cpu": model,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "openssl": ssl.OPENSSL_VERSION,
        **versions,
    }


def package_version(package: str) -> str:
    """An installed package's version, or `?`."""
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "?"


def code_version() -> dict[str, Any]:
    """The commit benchmarked, and the files of `scheduler/` changed since it (read-only git)."""
    def git(*argv: str) -> str:
        try:
            done = subprocess.run(["git", *argv], cwd=ROOT, capture_output=True, text=True,
                                  timeout=30, check=False)
        except OSError:
            return ""
        return done.stdout.strip()

    return {"commit": git("rev-parse", "--short", "HEAD"),
            "subject": git("log", "-1", "--format=%s"),
            "scheduler_tree": git("rev-parse", "--short", "HEAD:scheduler"),
            "changed": git("status", "--porcelain", "--", "scheduler").splitlines()}


# --- CPU -----------------------------------------------------------------------------------

def process_tree(pid: int) -> list[int]:
    """`pid` and all its descendants (Linux /proc)."""
    pids, index = [pid], 0
    while index < len(pids):
        current = pids[index]
        index += 1
        try:
            for task in os.listdir(f"/proc/{current}/task"):
                children = Path(f"/proc/{current}/task/{task}/children").read_text()
                pids.extend(int(child) for child in children.split())
        except OSError:
            continue
    return pids


def tree_cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds used so far by `pid` and its descendants, if /proc says."""
    total, ticks = 0, os.sysconf("SC_CLK_TCK")
    for member in process_tree(pid):
        try:
            fields = Path(f"/proc/{member}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            if member == pid:
                return None
            continue
        total += int(fields[11]) + int(fields[12])
    return total / ticks


def cpu_times() -> tuple[float, float]:
    """(busy, total) jiffies of the whole machine, from /proc/stat."""
    fields = [float(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    total = sum(fields[:8])
    idle = fields[3] + fields[4]
    return total - idle, total


class CpuMeter:
    """Machine CPU use (all cores) and one process tree's CPU over an interval."""

    def __init__(self, pid: int | None = None) -> None:
        self.pid = pid
        self.start_machine = cpu_times()
        self.start_process = tree_cpu_seconds(pid) if pid else None

    def read(self, seconds: float) -> dict[str, float | None]:
        """Machine busy % (100% = every core busy) and the process's CPU seconds."""
        busy, total = cpu_times()
        machine = (busy - self.start_machine[0]) / max(1.0, total - self.start_machine[1])
        process = None
        if self.pid and self.start_process is not None:
            now = tree_cpu_seconds(self.pid)
            process = None if now is None else now - self.start_process
        return {"machine_busy_percent": round(machine * 100, 1),
                "process_cpu_seconds": None if process is None else round(process, 2),
                "process_cpu_percent": None if process is None or seconds <= 0
                else round(process / seconds * 100, 1)}


def read_meters(meters: list[CpuMeter], seconds: float) -> dict[str, Any]:
    """Several processes' meters read as one: machine busy %, their CPU seconds summed."""
    readings = [meter.read(seconds) for meter in meters]
    each = [reading["process_cpu_seconds"] for reading in readings]
    total = None if None in each else sum(value or 0.0 for value in each)
    return {"machine_busy_percent": readings[0]["machine_busy_percent"],
            "process_cpu_seconds": None if total is None else round(total, 2),
            "process_cpu_percent": None if total is None or seconds <= 0
            else round(total / seconds * 100, 1),
            "per_process_cpu_seconds": each}


def wait_until_idle(pids: list[int], deadline: float) -> float:
    """Wait until the process trees of `pids` use almost no CPU (start-up over: imports,
    gunicorn workers booting) or `deadline`; how long it took."""
    began = time.monotonic()

    def used() -> float:
        return sum(tree_cpu_seconds(pid) or 0.0 for pid in pids)

    before, calm = used(), 0
    while calm < 2 and time.monotonic() < deadline:
        time.sleep(IDLE_STEP)
        now = used()
        calm = calm + 1 if now - before < IDLE_CPU_SECONDS else 0
        before = now
    return time.monotonic() - began


# --- processes -----------------------------------------------------------------------------

@dataclass
class ServerProcess:
    """A server process we started, in a process group of its own, with its log file."""

    name: str
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        """The process id (the group's)."""
        return self.process.pid

    def stop(self) -> int | None:
        """SIGTERM its process group and wait; SIGKILL after 30 s."""
        if self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGTERM)
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(10)
            except ProcessLookupError:
                pass
        return self.process.returncode

    def log_text(self) -> str:
        """Everything it logged so far."""
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def log_issues(self) -> list[str]:
        """Log lines that report trouble."""
        return [line for line in self.log_text().splitlines()
                if any(word in line.lower() for word in TROUBLE_WORDS)]


def start_process(name: str, argv: list[str], log: Path, env: dict[str, str], ready_text: str,
                  port: int | None = None, timeout: float = 60) -> ServerProcess:
    """Start a process in its own group, its output in `log`, and wait until it logs
    `ready_text` (and, given a `port`, accepts connections on it)."""
    with log.open("wb") as out:
        process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env,
                                   cwd=ROOT, start_new_session=True)
    server = ServerProcess(name, process, log)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ready_text in server.log_text() and (port is None or port_open(port)):
            return server
        if process.poll() is not None:
            break
        time.sleep(0.05)
    server.stop()
    raise BenchError(f"{name} did not start:\n{server.log_text()[-3000:]}")


def serve_argv(home: Path, role: str, *extra: str) -> list[str]:
    """The command line of `scheduler serve --role ROLE` of `home`."""
    return [str(SCHEDULER), "serve", "--home", str(home), "--role", role, *extra]


class ManagedProcess:
    """A process we started and measure while it runs: its RSS (all, and anonymous) sampled
    every RSS_INTERVAL, its exit status and the log lines that report trouble."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log: Path,
                 ready_text: str, timeout: float = 90, tree: bool = False) -> None:
        self.server = start_process(name, argv, log, env, ready_text, timeout=timeout)
        self.pid = self.server.pid
        self.metrics_port = 0  # where it serves its metrics, if it does
        self.rss_max_kb = self.anon_max_kb = 0
        self.tree = tree  # RSS summed over the process and its descendants
        self._stop_sampling = threading.Event()
        self.ready_at = time.time()
        self._sampler = threading.Thread(target=self._sample, daemon=True)
        self._sampler.start()

    def _status(self) -> dict[str, int]:
        values: Counter[str] = Counter()
        for pid in process_tree(self.pid) if self.tree else [self.pid]:
            try:
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith(("VmRSS:", "VmHWM:", "RssAnon:")):
                        values[line.split(":")[0]] += int(line.split()[1])
            except OSError:
                pass
        return dict(values)

    def node_id(self) -> str:
        """The engine node id its log announced (`--role engine`), or ''."""
        found = re.search(r"node (engine-[0-9a-f]+)", self.server.log_text())
        return found.group(1) if found else ""

    def _sample(self) -> None:
        while not self._stop_sampling.wait(RSS_INTERVAL):
            self._note(self._status())

    def _note(self, status: dict[str, int]) -> None:
        self.rss_max_kb = max(self.rss_max_kb, status.get("VmRSS", 0))
        self.anon_max_kb = max(self.anon_max_kb, status.get("RssAnon", 0))

    def stop(self) -> dict[str, Any]:
        """Stop it; its RSS figures, exit status and the log lines that report trouble."""
        status = self._status()
        self._stop_sampling.set()
        self._sampler.join(2)
        self._note(status)
        code = self.server.stop()
        # SQLite's memory-mapped database file counts in RSS; the anonymous part is the heap.
        return {"rss_max_mib": round(self.rss_max_kb / 1024, 1),
                "rss_anon_max_mib": round(self.anon_max_kb / 1024, 1),
                "rss_end_mib": round(status.get("VmRSS", 0) / 1024, 1),
                "hwm_mib": round(status.get("VmHWM", 0) / 1024, 1),
                "exit_status": code, "log_issues": [
                    line for line in self.server.log_issues()
                    if not NOT_TROUBLE.search(line)][:20]}


# --- optional sampling profiler ------------------------------------------------------------

class Profiler:
    """py-spy sampling a server's first worker during one phase (`--profile`)."""

    def __init__(self, executable: str, output: Path) -> None:
        self.executable, self.output = executable, output
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, server_pid: int, seconds: float) -> None:
        """Start sampling the first worker of `server_pid` for `seconds`."""
        workers = process_tree(server_pid)[1:] or [server_pid]
        self.process = subprocess.Popen(
            [self.executable, "record", "--pid", str(workers[0]), "--duration",
             str(max(1, int(seconds) - 1)), "--rate", "200", "--format", "raw",
             "--output", str(self.output), "--nonblocking"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def summary(self, top: int = 15) -> dict[str, list[tuple[str, float]]]:
        """Top frames by self and by inclusive share of the samples."""
        if self.process is None:
            return {}
        _, err = self.process.communicate(timeout=60)
        if not self.output.exists():
            print(f"  py-spy failed: {err.decode(errors='replace')[-500:]}")
            return {}
        own: Counter[str] = Counter()
        inclusive: Counter[str] = Counter()
        total = 0
        for line in self.output.read_text().splitlines():
            stack, _, count_text = line.rpartition(" ")
            if not stack or not count_text.isdigit():
                continue
            count = int(count_text)
            frames = [frame for frame in stack.split(";") if not frame.startswith("process ")
                      and not frame.startswith("thread ")]
            if not frames:
                continue
            total += count
            own[frames[-1]] += count
            for frame in set(frames):
                inclusive[frame] += count
        if not total:
            return {}
        return {
            "self": [(frame, n / total * 100) for frame, n in own.most_common(top)],
            "inclusive": [(frame, n / total * 100) for frame, n in inclusive.most_common(top)],
        }
