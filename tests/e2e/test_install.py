"""`make serve`'s install: the service and its runtime dependencies in a fresh venv, none of
the test extras; made once, and again when pyproject.toml changes; and the service it
installs serves."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import tomllib
from pathlib import Path

import pytest

from tests.e2e.support import free_port

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
# Test tools that the test extras bring along, by their own name or their family's.
TEST_ONLY = ("pytest", "mypy", "hypothesis", "schemathesis", "ruff")
TEST_ONLY_FAMILIES = ("azure-", "types-", "pytest-")


def normalised(name: str) -> str:
    """A distribution's name as PEP 503 compares it."""
    return re.sub(r"[-_.]+", "-", name).lower()


# A requirement's distribution name: what comes before its extras, version or marker.
REQUIREMENT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def requirement_names(requirements: list[str]) -> set[str]:
    """The distributions a list of requirements names."""
    names = set()
    for requirement in requirements:
        name = REQUIREMENT_NAME.match(requirement.strip())
        assert name is not None, requirement
        names.add(normalised(name.group()))
    return names


def make(*args: str) -> subprocess.CompletedProcess[str]:
    """Run make in the repository to its end."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("SCHEDULER_", "MAKE")) and k != "MFLAGS"}
    return subprocess.run(["make", "-C", str(ROOT), *args], capture_output=True, text=True,
                          timeout=540, env=env, check=False)


def installed(venv: Path) -> set[str]:
    """The distributions installed in a venv."""
    listing = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "list",
                              "--format=json"], capture_output=True, text=True, timeout=120,
                             check=True)
    return {normalised(entry["name"]) for entry in json.loads(listing.stdout)}


@pytest.fixture(scope="module")
def lean_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A venv made by `make install`, the install `make serve` runs."""
    venv = tmp_path_factory.mktemp("install") / "venv"
    done = make("install", f"VENV={venv}")
    assert done.returncode == 0, done.stdout + done.stderr
    return venv


def test_make_install_puts_the_runtime_dependencies_and_no_test_tool_in_a_fresh_venv(
        lean_venv: Path) -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    there = installed(lean_venv)
    assert requirement_names(project["dependencies"]) | {"scheduler"} <= there
    assert requirement_names(project["optional-dependencies"]["test"]) & there == set()
    assert sorted(name for name in there
                  if name in TEST_ONLY or name.startswith(TEST_ONLY_FAMILIES)) == []


def test_make_install_installs_again_only_when_pyproject_changes(lean_venv: Path) -> None:
    again = make("install", f"VENV={lean_venv}")
    assert again.returncode == 0 and "pip install" not in again.stdout
    # As if pyproject.toml had changed since: its install is older than it.
    stamp = lean_venv / ".installed-runtime"
    before = (ROOT / "pyproject.toml").stat().st_mtime - 60
    os.utime(stamp, (before, before))
    planned = make("--dry-run", "install", f"VENV={lean_venv}")
    assert "pip install --quiet -e ." in planned.stdout
    assert "[test]" not in planned.stdout


def test_make_serve_says_how_to_put_scheduler_on_path_and_serves_on_the_port_given(
        lean_venv: Path, tmp_path: Path) -> None:
    home, certs, port = tmp_path / "home", tmp_path / "certs", free_port()
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("SCHEDULER_", "MAKE")) and k != "MFLAGS"}
    serve = subprocess.Popen(
        ["make", "-C", str(ROOT), "serve", f"VENV={lean_venv}", f"HOME_DIR={home}",
         f"CERTS_DIR={certs}", f"PORT={port}"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
        start_new_session=True)
    lines: list[str] = []
    try:
        assert serve.stdout is not None
        for line in serve.stdout:  # until its ready line, or its end
            lines.append(line)
            if "scheduler ready" in line:
                break
        assert f"https://127.0.0.1:{port}" in lines[-1], "".join(lines)
        hints = [line for line in lines if "export PATH=" in line]
        assert hints == [f'To run scheduler from this shell: export PATH="{lean_venv}/bin:'
                         '$PATH"\n']
        listed = subprocess.run(
            [str(lean_venv / "bin" / "scheduler"), "collections", "list", "--home", str(home),
             "--output", "json"], capture_output=True, text=True, timeout=60, env=env,
            check=False)
        assert listed.returncode == 0, listed.stderr
        assert json.loads(listed.stdout) == []
    finally:
        os.killpg(serve.pid, signal.SIGTERM)
        serve.wait(60)
