"""`serve --role all` owns its children: killed (`kill -9` included), it takes its engine and
API with it; a child that dies is started again, and meanwhile `/readyz` and runs say so."""

from __future__ import annotations

import fcntl
import os
import signal
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.e2e.support import ServerProcess, create_collection, wait_for
from tests.engine.harness import Receiver

NO_ENGINE = "no engine is running"

# What `/readyz` says when no execution waits for engine nodes.
NO_WAITING = {"executionsWaitingForNodes": {"count": 0, "nodes": []}}


def state(pid: int) -> str | None:
    """A process's state letter (`Z`: dead, not yet reaped), None once it is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return None


def alive(pid: int) -> bool:
    """Whether a process runs (a zombie has ended)."""
    return state(pid) not in (None, "Z")


def command_line(pid: int) -> str:
    """A process's arguments, joined by spaces ('' once it is gone)."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except (FileNotFoundError, ProcessLookupError):
        return ""


def parent(pid: int) -> int | None:
    """A process's parent, None once it is gone."""
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (FileNotFoundError, ProcessLookupError):
        return None


def children(pid: int) -> list[int]:
    """The running processes whose parent is `pid`."""
    pids = [int(entry.name) for entry in Path("/proc").iterdir() if entry.name.isdigit()]
    return [child for child in pids if parent(child) == pid and alive(child)]


def descendants(pid: int) -> list[int]:
    """The running processes `pid` started, and those they started."""
    found = children(pid)
    return found + [grandchild for child in found for grandchild in descendants(child)]


def engine_of(server: ServerProcess) -> int | None:
    """The pid of the engine process a `serve --role all` started, if one runs."""
    assert server.process is not None
    found = [pid for pid in descendants(server.process.pid)
             if "--role engine" in command_line(pid)]
    return found[0] if len(found) == 1 else None


def workers_of(server: ServerProcess) -> list[int]:
    """The API's workers that run, as gunicorn's log names them when it boots them."""
    booted = [int(line.rsplit(":", 1)[1]) for line in list(server.output)
              if "Booting worker with pid:" in line]
    return [pid for pid in booted if alive(pid)]


def api_server_of(server: ServerProcess) -> int | None:
    """The pid of the process that serves the API: the parent of its workers."""
    parents = {parent(pid) for pid in workers_of(server)} - {None}
    return parents.pop() if len(parents) == 1 else None


def parts_of(server: ServerProcess) -> list[int]:
    """The engine and the API's workers, once both run (else [])."""
    engine, workers = engine_of(server), workers_of(server)
    return [engine, *workers] if engine is not None and len(workers) >= 2 else []


def readiness(server: ServerProcess) -> tuple[int, dict[str, Any]]:
    """What `/readyz` answers a load balancer: its status code and body."""
    with requests.Session() as session:
        session.trust_env = False
        answer = session.get(f"{server.base_url}/readyz", verify=str(server.info["caCert"]),
                             timeout=10)
        return answer.status_code, answer.json()


def answers(server: ServerProcess) -> bool:
    """Whether the API answers `/healthz` now."""
    try:
        with requests.Session() as session:
            session.trust_env = False
            return session.get(f"{server.base_url}/healthz", timeout=5,
                               verify=str(server.info["caCert"])).status_code == 200
    except requests.RequestException:
        return False


def lock_is_free(path: Path) -> bool:
    """Whether nobody holds the SQLite home's engine lock."""
    with open(path, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        fcntl.flock(handle, fcntl.LOCK_UN)
        return True


def database_env(database: str, request: pytest.FixtureRequest) -> dict[str, str]:
    """The environment of a serve on SQLite (the home's own) or on a fresh PostgreSQL schema."""
    if database == "sqlite":
        return {}
    _schema, url = request.getfixturevalue("postgres_schema")
    return {"SCHEDULER_DATABASE_URL": url}


def output(server: ServerProcess) -> str:
    """What the serve printed and logged so far."""
    return "".join(server.output)


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_a_killed_serve_takes_its_engine_and_api_with_it_and_frees_the_engine_lock(
        server_factory: Any, database: str, request: pytest.FixtureRequest) -> None:
    env = database_env(database, request)
    server: ServerProcess = server_factory(env=env)
    assert server.process is not None
    assert wait_for(lambda: parts_of(server), 60), "the engine and the API did not start"
    parts = [*parts_of(server), *descendants(server.process.pid)]

    os.kill(server.process.pid, signal.SIGKILL)  # serve alone: not its process group
    server.process.wait(10)
    assert wait_for(lambda: not any(alive(pid) for pid in parts), 60), \
        [(pid, command_line(pid)) for pid in parts if alive(pid)]
    if database == "sqlite":
        assert lock_is_free(server.home / "engine.lock")

    again: ServerProcess = server_factory(home=server.home, env=env)
    assert wait_for(lambda: readiness(again) == (200, {
        "status": "ready", "database": "ok", "engine": "ok", "engines": 1,
        "unrunnableAttemptsLastMinute": {}, **NO_WAITING}), 60), readiness(again)
    assert "waiting for it to stop" not in output(again)
    assert again.stop() == 0


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_a_killed_engine_is_started_again_and_readyz_says_it_is_not_running_meanwhile(
        server_factory: Any, database: str, request: pytest.FixtureRequest) -> None:
    env = database_env(database, request)
    server: ServerProcess = server_factory(env=env)
    assert wait_for(lambda: readiness(server)[1]["engine"] == "ok", 60), readiness(server)
    live = 1
    if database == "postgresql":  # an engine node of the cluster besides this serve's
        server_factory(home=server.home, env=env, role="engine")
        live = 2
        assert wait_for(lambda: readiness(server)[1]["engines"] == live, 60), readiness(server)
    engine = engine_of(server)
    assert engine is not None

    os.kill(engine, signal.SIGKILL)
    seen: list[tuple[int, dict[str, Any]]] = []
    assert wait_for(lambda: seen.append(readiness(server)) or
                    seen[-1][1]["engine"].startswith("not running"), 15), seen[-1:]
    status, body = seen[-1]
    assert body["engine"] == \
        "not running: this node's engine has sent no heartbeat in the last 5 s"
    if database == "sqlite":  # no engine anywhere: the node is not ready
        assert (status, body["status"], body["engines"]) == (503, "not ready", 0)
    else:  # the other engine fires: the node's API is still worth sending traffic to
        assert (status, body["status"], body["engines"]) == (200, "ready", 1)

    assert wait_for(lambda: engine_of(server) not in (None, engine), 30)
    again = engine_of(server)
    assert wait_for(lambda: readiness(server)[1]["engine"] == "ok", 60), readiness(server)
    assert readiness(server)[1]["engines"] == live
    log = output(server)
    assert f"engine (pid {engine}) was killed by signal SIGKILL; restarting it in 1 s" in log
    assert f"engine restarted (pid {again})" in log
    assert server.stop() == 0


def test_a_killed_api_server_takes_its_workers_with_it_and_is_started_again(
        server_factory: Any) -> None:
    server: ServerProcess = server_factory()
    assert server.process is not None
    assert wait_for(lambda: parts_of(server), 60), "the engine and the API did not start"
    api = api_server_of(server)
    assert api is not None
    workers = workers_of(server)

    os.kill(api, signal.SIGKILL)
    assert wait_for(lambda: not any(alive(pid) for pid in workers), 60), \
        [(pid, command_line(pid)) for pid in workers if alive(pid)]
    assert wait_for(lambda: api_server_of(server) not in (None, api), 60)
    assert wait_for(lambda: answers(server), 60), output(server)[-3000:]
    assert f"api (pid {api}) was killed by signal SIGKILL; restarting it in 1 s" \
        in output(server)
    assert server.stop() == 0


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_a_run_started_while_no_engine_runs_is_answered_as_queued_and_runs_once_one_starts(
        server_factory: Any, receiver: Receiver, database: str,
        request: pytest.FixtureRequest) -> None:
    env = {**database_env(database, request), "SCHEDULER_OUTBOUND_ALLOW_PRIVATE_NETWORKS": "true"}
    api: ServerProcess = server_factory(env=env, role="api")
    session, jobs = create_collection(api, "Standard")
    job = {"startTime": "2099-01-01T00:00:00Z", "action": {"type": "http", "request": {
        "uri": receiver.url("/run"), "method": "POST", "body": "by hand"}}}
    assert session.put(f"{jobs}/later", json=job).status_code == 201

    queued = session.post(f"{jobs}/later/run")
    assert queued.status_code == 202, queued.text
    assert queued.json()["queued"] == NO_ENGINE
    assert queued.headers["Scheduler-Queued"] == NO_ENGINE
    assert receiver.requests == []

    server_factory(home=api.home, env=env, role="engine")
    assert wait_for(lambda: receiver.requests, 30), "the queued run never ran"
    assert [r.body for r in receiver.requests] == [b"by hand"]
    started = session.post(f"{jobs}/later/run")
    assert started.status_code == 202
    assert "queued" not in started.json() and "Scheduler-Queued" not in started.headers
