"""Fixtures (a plugin of the suite) for tests of the command-line client run as the real
binary against one real `scheduler serve`, configured as people configure it; and how those
tests run a command and read what it printed."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from scheduler.security import pki
from tests.e2e.support import BIN, ServerProcess, free_port


def start_server(home: Path, role: str = "all") -> ServerProcess:
    """A running `scheduler serve --role ROLE` on a home `scheduler init` made for its port
    (so the profile init wrote names the right URL), allowed to call loopback receivers."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCHEDULER_")}
    env.update({"SCHEDULER_SERVER_PORT": str(port),
                "SCHEDULER_OUTBOUND_ALLOW_PRIVATE_NETWORKS": "true"})
    made = subprocess.run([str(BIN), "init", "--home", str(home), "--json"], env=env,
                          capture_output=True, text=True, check=True)
    server = ServerProcess(home, json.loads(made.stdout), port, env, role=role)
    server.start()
    return server


def person_env(home: Path, other_ca: Path) -> dict[str, str]:
    """The environment of a person's shell: SCHEDULER_HOME names the home, and the trust
    variables of other tools name a CA that did not sign the server (the client ignores
    them)."""
    other_ca.write_bytes(pki.create_ca("someone else", datetime.now(UTC)).cert_pem)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCHEDULER_")}
    env.update({"SCHEDULER_HOME": str(home), "REQUESTS_CA_BUNDLE": str(other_ca),
                "SSL_CERT_FILE": str(other_ca), "CURL_CA_BUNDLE": str(other_ca)})
    return env


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One server (API and engine) for the module, on a home of its own."""
    server = start_server(tmp_path_factory.mktemp("client") / "home")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def client_env(served: ServerProcess, tmp_path_factory: pytest.TempPathFactory
               ) -> dict[str, str]:
    """A person's shell set up for the module's server."""
    return person_env(served.home, tmp_path_factory.mktemp("other") / "ca.pem")


def cli(env: dict[str, str], *args: str, stdin: str | None = None, timeout: float = 300
        ) -> subprocess.CompletedProcess[str]:
    """Run `scheduler ARGS` as a person would."""
    return subprocess.run([str(BIN), *args], env=env, input=stdin, capture_output=True,
                          text=True, timeout=timeout)


def cli_json(env: dict[str, str], *args: str) -> Any:
    """Run a command with `--output json` and parse what it printed."""
    done = cli(env, *args, "--output", "json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def failed(done: subprocess.CompletedProcess[str], code: int) -> str:
    """Check a command failed with `code` and a message, not a traceback; the message."""
    assert done.returncode == code, (done.stdout, done.stderr)
    assert done.stderr.startswith("scheduler: ") and "Traceback" not in done.stderr
    return done.stderr
