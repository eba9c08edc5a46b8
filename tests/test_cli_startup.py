"""`scheduler --help` and the client's commands load the client alone: the server stack
(SQLAlchemy, Flask, gunicorn, cryptography, ...) is imported only by the server's commands.

Each command runs in a fresh interpreter, which then reports what it imported: a check of
structure, not of time (bench/startup.py measures the time).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import pytest

# The packages of the server stack, and the project's modules only the server uses.
SERVER_STACK = ("sqlalchemy", "flask", "werkzeug", "gunicorn", "psycopg", "alembic",
                "cryptography", "prometheus_client", "aiormq", "redis", "httptools",
                "scheduler.admin", "scheduler.api", "scheduler.db", "scheduler.services",
                "scheduler.engine", "scheduler.actions", "scheduler.security", "scheduler.app")
# Runs `scheduler ARGS...` in this interpreter and prints its exit code and every module
# it imported.
PROBE = """
import json, sys
from scheduler.cli import main
try:
    code = main(sys.argv[1:])
except SystemExit as exc:  # --help
    code = exc.code
print(json.dumps({"code": code, "modules": sorted(sys.modules)}))
"""
# Nothing listens there: a client command gets as far as connecting, and fails with exit 1.
NOWHERE = "https://127.0.0.1:1"


def run_probe(*argv: str) -> tuple[int, set[str]]:
    """Run the command in a fresh interpreter: its exit code and the modules it imported."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCHEDULER_")}
    done = subprocess.run([sys.executable, "-c", PROBE, *argv], capture_output=True,
                          text=True, timeout=60, env=env, check=False)
    report = json.loads(done.stdout.splitlines()[-1])
    return report["code"], set(report["modules"])


def server_stack_in(modules: set[str]) -> list[str]:
    """The modules of the server stack among `modules`."""
    return sorted(name for name in modules
                  if any(name == top or name.startswith(f"{top}.") for top in SERVER_STACK))


def test_help_imports_no_server_stack() -> None:
    code, modules = run_probe("--help")
    assert code == 0
    assert server_stack_in(modules) == []


@pytest.mark.parametrize("command", [["jobs", "list"], ["collections", "list"]])
def test_a_client_command_imports_no_server_stack(home: dict[str, Any],
                                                  command: list[str]) -> None:
    code, modules = run_probe(
        *command, "--url", NOWHERE, "--cert", home["clientCert"], "--ca", home["caCert"],
        "--subscription", home["subscriptionId"], "--cloud-service", "cs",
        "--collection", "jc", "--output", "json")
    assert code == 1  # it built its TLS client and tried to connect
    assert "httpx" in modules
    assert server_stack_in(modules) == []


def test_a_server_command_imports_its_code_when_it_runs(home: dict[str, Any]) -> None:
    code, modules = run_probe("db", "upgrade", "--home", home["home"])
    assert code == 0
    assert {"scheduler.admin", "sqlalchemy"} <= modules
