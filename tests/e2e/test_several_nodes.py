"""The "Several nodes" recipe of docs/operations.md, run as written: one PostgreSQL, two API
nodes, two engine nodes, every home a copy of the one `init --database-url` made; and what
`serve` says when its database is not ready for it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from scheduler.db.schema import head_revision
from tests.e2e.support import BIN, ServerProcess, create_collection, free_port, wait_for
from tests.engine.harness import Receiver

JOBS = 40


def scheduler(*args: str, env: dict[str, str] | None = None
              ) -> subprocess.CompletedProcess[str]:
    """Run the `scheduler` command to its end."""
    return subprocess.run([str(BIN), *args], capture_output=True, text=True, timeout=120,
                          env=env or clean_environment())


def clean_environment(**extra: str) -> dict[str, str]:
    """This process's environment without any SCHEDULER_ setting, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCHEDULER_")}
    env.update(extra)
    return env


@pytest.fixture
def nodes() -> Iterator[list[ServerProcess]]:
    """The processes a test starts, stopped at its end."""
    started: list[ServerProcess] = []
    yield started
    for node in started:
        node.stop()


def start_node(nodes: list[ServerProcess], home: Path, info: dict[str, Any], role: str,
               env: dict[str, str]) -> ServerProcess:
    """`scheduler serve --home HOME --role ROLE` on a port of its own."""
    node = ServerProcess(home, info, free_port(), env, role=role)
    nodes.append(node)
    node.start(timeout=60)
    return node


def test_the_several_nodes_recipe_fires_each_job_once(
    tmp_path: Path, postgres_schema: tuple[str, str], nodes: list[ServerProcess],
    receiver: Receiver,
) -> None:
    _, url = postgres_schema
    first = tmp_path / "node1"
    made = scheduler("init", "--home", str(first), "--database-url", url, "--json")
    assert made.returncode == 0, made.stderr
    info = json.loads(made.stdout)
    homes = [first] + [tmp_path / f"node{n}" for n in (2, 3, 4)]
    for home in homes[1:]:
        shutil.copytree(first, home)
    # The receiver is on loopback: only this test lets the engines call a private address.
    env = clean_environment(SCHEDULER_OUTBOUND_ALLOW_PRIVATE_NETWORKS="true",
                            SCHEDULER_ENGINE_MAX_SLEEP_SECONDS="0.2")
    api1 = start_node(nodes, homes[0], info, "api", env)
    api2 = start_node(nodes, homes[1], dict(info, caCert=str(homes[1] / "ca.pem"),
                                            clientCert=str(homes[1] / "admin.pem")), "api", env)
    session, jobs = create_collection(api1, "P20Premium")
    due = datetime.now(UTC) + timedelta(seconds=10)
    for index in range(JOBS):
        job = {"startTime": due.isoformat(), "action": {
            "type": "http", "request": {"uri": receiver.url(f"/n{index}"), "method": "POST"},
            "retryPolicy": {"retryType": "none"}}}
        assert session.put(f"{jobs}/job{index:02d}", json=job).status_code == 201
    other = api2.session()
    seen = other.get(jobs.replace(api1.base_url, api2.base_url) + "/job07")
    assert seen.status_code == 200, seen.text
    assert seen.json()["action"]["request"]["uri"] == receiver.url("/n7")
    # Two engines on one machine: each under a name of its own, as the recipe says.
    for number, home in enumerate(homes[2:], 1):
        start_node(nodes, home, info, "engine",
                   {**env, "SCHEDULER_ENGINE_NODE_NAME": f"engine{number}"})
    assert wait_for(lambda: len(receiver.requests) >= JOBS, 120), len(receiver.requests)
    time.sleep(2)  # room for a duplicate to show up
    assert len(receiver.requests) == JOBS
    assert max(Counter(r.headers["x-ms-execution-tag"] for r in receiver.requests).values()) == 1
    assert {r.path for r in receiver.requests} == {f"/n{i}" for i in range(JOBS)}


def test_serve_names_the_fix_for_a_database_without_schema_or_subscription(
        tmp_path: Path, postgres_schema: tuple[str, str]) -> None:
    _, url = postgres_schema
    home = tmp_path / "home"
    assert scheduler("init", "--home", str(home)).returncode == 0
    # The home was made on SQLite; its config is then pointed at an empty PostgreSQL.
    env = clean_environment(SCHEDULER_DATABASE_URL=url)
    empty = scheduler("serve", "--home", str(home), "--port", str(free_port()), env=env)
    assert empty.returncode == 2
    assert f"has no scheduler schema: run `scheduler db upgrade --home {home}`" in empty.stderr
    assert "Traceback" not in empty.stderr
    upgraded = scheduler("db", "upgrade", "--home", str(home), env=env)
    assert upgraded.returncode == 0, upgraded.stderr
    assert f"schema upgraded from revision none to {head_revision()}" in upgraded.stdout
    assert f"schema already at revision {head_revision()}" in scheduler(
        "db", "upgrade", "--home", str(home), env=env).stdout
    strange = scheduler("serve", "--home", str(home), "--port", str(free_port()), env=env)
    assert strange.returncode == 2
    assert "holds no subscription for this home's admin certificate" in strange.stderr
    assert f"scheduler subscription create --home {home}" in strange.stderr
    assert "Traceback" not in strange.stderr


@pytest.mark.parametrize(("database_url", "message"), [
    ("not a url", "is not a database URL"),
    ("mysql://u@127.0.0.1/db", "mysql is not supported"),
    ("postgresql+psycopg://postgres@127.0.0.1:1/test", "the database cannot be used"),
])
def test_init_on_a_database_it_cannot_use_writes_nothing(
        tmp_path: Path, database_url: str, message: str) -> None:
    home = tmp_path / "home"
    result = scheduler("init", "--home", str(home), "--database-url", database_url)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert not home.exists()
