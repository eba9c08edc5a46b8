"""The layout's rules, held by reading every module's imports."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "scheduler"

# What each layer may import from the project, besides itself.
ALLOWED = {
    "domain": set(),
    "actions": {"domain", "clock"},
    "security": {"domain", "clock"},
    "db": {"domain", "clock"},
    "services": {"domain", "db", "security", "settings", "clock"},
    "engine": {"domain", "db", "services", "security", "clock", "settings", "actions"},
    # Views and schemas read and write through services: never the database's models, rows
    # or signals.
    "api": {"domain", "services", "security", "errors", "settings", "clock"},
    # The dashboard: pages over the services, on the API's runtime, sessions and use cases.
    "ui": {"api", "domain", "services", "security", "errors", "settings", "clock"},
    # A client of the HTTPS API, never of the database.
    "client": {"settings", "clock"},
}
# Wiring, configuration, the one clock, the one error tree, how processes report, and how
# `serve --role all` keeps its processes running (wiring of processes, as cli is of commands);
# the server's commands (admin), which the command line loads only when one runs, and the
# home's files they write (home).
TOP_LEVEL = {"__init__", "admin", "app", "cli", "clock", "errors", "home", "settings",
             "supervise", "telemetry"}
# The few imports the rules above do not allow, each named with its reason.
EXCEPTIONS: dict[str, set[str]] = {
    # The request's runtime holds the database that its transactions open on.
    "api/runtime.py": {"scheduler.db.session"},
    # The server reads the TLS trust store through a database of its own, riding out outages.
    "api/server.py": {"scheduler.db.session", "scheduler.db.outage"},
}
# The engine knows actions only through their interface; its runner builds the registry.
ENGINE_ACTIONS = {"scheduler.actions.base", "scheduler.actions.registry"}
ENGINE_WIRING = {"runner"}


def project_imports(path: Path) -> set[str]:
    """The `scheduler.*` modules a file imports, type-checking imports included."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "scheduler":
                found.update(f"scheduler.{alias.name}" for alias in node.names)
            elif node.module.startswith("scheduler."):
                found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("scheduler."))
    return found


def modules_by_name() -> dict[str, Path]:
    """Every module of the package by its dotted name; a package by its own name."""
    found = {}
    for path in modules():
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def imported_modules(path: Path, known: set[str]) -> set[str]:
    """The project's modules a file imports, `from package import module` read as the
    module, type-checking imports included."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                submodule = f"{node.module}.{alias.name}"
                found.add(submodule if submodule in known else node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found & known


def import_circles() -> list[list[str]]:
    """Each circle of imports among the package's modules, as the modules it passes."""
    paths = modules_by_name()
    known = set(paths)
    graph = {name: imported_modules(path, known) - {name} for name, path in paths.items()}
    circles: list[list[str]] = []
    done: set[str] = set()

    def visit(name: str, trail: list[str]) -> None:
        if name in trail:
            circles.append([*trail[trail.index(name):], name])
            return
        if name in done:
            return
        for imported in sorted(graph[name]):
            visit(imported, [*trail, name])
        done.add(name)

    for name in sorted(graph):
        visit(name, [])
    return circles


def layer_of(module: str) -> str:
    """`scheduler.engine.node` -> `engine`."""
    return module.split(".")[1]


def modules() -> list[Path]:
    """Every module of the package."""
    return sorted(PACKAGE.rglob("*.py"))


def test_every_module_lives_in_a_layer_or_is_wiring() -> None:
    top = {path.stem for path in PACKAGE.glob("*.py")}
    assert top <= TOP_LEVEL, f"modules outside any layer: {sorted(top - TOP_LEVEL)}"
    packages = {path.name for path in PACKAGE.iterdir()
                if path.is_dir() and (path / "__init__.py").exists()}
    assert packages == set(ALLOWED)


@pytest.mark.parametrize("path", [p for p in modules() if p.parent != PACKAGE],
                         ids=lambda p: str(p.relative_to(PACKAGE)))
def test_a_layer_imports_only_what_its_rules_allow(path: Path) -> None:
    layer = path.relative_to(PACKAGE).parts[0]
    imported = project_imports(path)
    outside = {m for m in imported if layer_of(m) not in ALLOWED[layer] | {layer}}
    outside -= EXCEPTIONS.get(str(path.relative_to(PACKAGE)), set())
    assert not outside, f"{layer} may not import {sorted(outside)}"
    if layer == "engine" and path.stem not in ENGINE_WIRING:
        actions = {m for m in imported if layer_of(m) == "actions"}
        assert actions <= ENGINE_ACTIONS, \
            f"the engine knows actions only through {sorted(ENGINE_ACTIONS)}: {sorted(actions)}"


# The engine's statements are its store's: no other engine module builds or runs SQL.
ENGINE_STORE = "store"
STATEMENT_MODULES = ("sqlalchemy", "scheduler.db.models", "scheduler.db.bulk",
                     "scheduler.db.compiled", "scheduler.db.leases", "scheduler.db.executions")


def all_imports(path: Path) -> set[str]:
    """Every module a file imports, the project's and others', type-checking imports
    included."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


def statement_imports(path: Path) -> set[str]:
    """What a file imports to build or run SQL."""
    return {name for name in all_imports(path)
            if any(name == module or name.startswith(f"{module}.")
                   for module in STATEMENT_MODULES)}


@pytest.mark.parametrize("path", [p for p in (PACKAGE / "engine").glob("*.py")
                                  if p.stem != ENGINE_STORE],
                         ids=lambda p: p.stem)
def test_only_the_engines_store_runs_sql(path: Path) -> None:
    assert statement_imports(path) == set(), \
        f"the engine's SQL is its store's (engine/{ENGINE_STORE}.py)"


def test_the_engines_store_runs_no_statement_of_the_services() -> None:
    store = PACKAGE / "engine" / f"{ENGINE_STORE}.py"
    assert {m for m in project_imports(store) if layer_of(m) == "services"} == set()


def test_the_sql_rule_catches_a_statement_built_outside_the_store(tmp_path: Path) -> None:
    module = tmp_path / "node.py"
    module.write_text("from sqlalchemy.orm import Session\nimport scheduler.db.bulk\n"
                      "from scheduler.db.session import Database\n")
    assert statement_imports(module) == {"sqlalchemy.orm", "scheduler.db.bulk"}


# The use cases know no web framework: they raise `services.errors`, which the API answers.
WEB_FRAMEWORKS = ("flask", "werkzeug")


def web_imports(path: Path) -> set[str]:
    """The web frameworks' modules a file imports."""
    return {name for name in all_imports(path) if name.split(".")[0] in WEB_FRAMEWORKS}


@pytest.mark.parametrize("path", sorted((PACKAGE / "services").glob("*.py")),
                         ids=lambda p: p.stem)
def test_services_know_no_web_framework(path: Path) -> None:
    assert web_imports(path) == set(), "services raise services.errors; the API answers them"


# A job's wire documents are read only where they arrive: the API's views and schemas (and
# the client, which reads the API's answers). Everything else reads the typed job; its stored
# form is read only by its serializer (and by the migration that made it).
# admin: what `init --json` prints; ui: the dashboard shows what the API shows (an
# execution's output parameters).
WIRE_READERS = ("api", "client", "admin.py", "ui")
STORED_JOB_SERIALIZER = "db/stored_jobs.py"
MIGRATIONS = "db/migrations"
CAMEL_CASE = re.compile(r"[a-z]+[A-Z][A-Za-z]*")
# The methods that read a mapping by key.
KEY_READS = {"get", "pop", "setdefault"}


def camel_case_reads(path: Path) -> list[str]:
    """The camelCase keys a module reads out of a mapping: `x["someKey"]`, `x.get("someKey")`."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        key = None
        if isinstance(node, ast.Subscript) and isinstance(node.ctx, ast.Load):
            key = node.slice
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
              and node.func.attr in KEY_READS and node.args):
            key = node.args[0]
        if (isinstance(key, ast.Constant) and isinstance(key.value, str)
                and CAMEL_CASE.fullmatch(key.value)):
            found.append(f"{path.name}:{node.lineno} {key.value}")
    return found


def stored_job_loads(path: Path) -> list[str]:
    """`json.loads` calls on a stored job's definition (an argument naming `definition`)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and node.func.attr == "loads"):
            continue
        names = {part.id if isinstance(part, ast.Name) else part.attr
                 for arg in node.args for part in ast.walk(arg)
                 if isinstance(part, ast.Name | ast.Attribute)}
        if any("definition" in name for name in names):
            found.append(f"{path.name}:{node.lineno}")
    return found


def outside(*parts: str) -> list[Path]:
    """The package's modules outside the given layers or files."""
    return sorted(path for path in PACKAGE.rglob("*.py")
                  if not any(str(path.relative_to(PACKAGE)).startswith(part)
                             for part in parts))


@pytest.mark.parametrize("path", outside(*WIRE_READERS, MIGRATIONS),
                         ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_wire_key_is_read_outside_the_api(path: Path) -> None:
    assert camel_case_reads(path) == [], "wire documents are read in api/: use the typed job"


@pytest.mark.parametrize("path", outside(STORED_JOB_SERIALIZER, MIGRATIONS),
                         ids=lambda p: str(p.relative_to(PACKAGE)))
def test_only_the_serializer_parses_a_stored_job(path: Path) -> None:
    assert stored_job_loads(path) == [], f"a stored job is read by {STORED_JOB_SERIALIZER}"


def test_the_job_rules_catch_a_wire_read_and_a_stored_job_parsed(tmp_path: Path) -> None:
    module = tmp_path / "reader.py"
    module.write_text("import json\n"
                      "def f(job, doc):\n"
                      "    a = doc['storageAccount']\n"
                      "    b = doc.get('retryPolicy') or doc['snake_case']\n"
                      "    doc['writtenKey'] = 1\n"
                      "    return json.loads(job.definition), json.loads(job.steps)\n")
    assert camel_case_reads(module) == ["reader.py:3 storageAccount", "reader.py:4 retryPolicy"]
    assert stored_job_loads(module) == ["reader.py:6"]


def test_the_rules_catch_a_forbidden_import(tmp_path: Path) -> None:
    module = tmp_path / "bad.py"
    module.write_text("from scheduler.engine.node import Engine\nimport scheduler.api.jobs\n")
    assert project_imports(module) == {"scheduler.engine.node", "scheduler.api.jobs"}


def test_no_module_imports_one_that_imports_it_back() -> None:
    assert import_circles() == []


def test_the_circle_check_finds_a_circle(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                         ) -> None:
    package = tmp_path / "scheduler"
    (package / "engine").mkdir(parents=True)
    for name in ("__init__.py", "engine/__init__.py"):
        (package / name).write_text("")
    (package / "engine" / "node.py").write_text("from scheduler.engine import loop\n")
    (package / "engine" / "loop.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
        "    from scheduler.engine.node import Engine\n")
    monkeypatch.setattr(__name__ + ".PACKAGE", package)
    assert import_circles() == [
        ["scheduler.engine.loop", "scheduler.engine.node", "scheduler.engine.loop"]]


TESTS = Path(__file__).resolve().parent


def rule_breaks(path: Path) -> list[str]:
    """What a test module does that the suite's rules forbid: import a private name, or
    from a conftest or another test module (helpers are fixtures), or read a private member
    of anything but itself."""
    broken = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            leaf = node.module.rsplit(".", 1)[-1]
            if leaf == "conftest" or leaf.startswith("test_"):
                broken.append(f"line {node.lineno}: imports from {node.module}")
            broken.extend(f"line {node.lineno}: imports the private {alias.name}"
                          for alias in node.names if alias.name.startswith("_"))
        elif (isinstance(node, ast.Attribute) and node.attr.startswith("_")
              and not node.attr.startswith("__")
              and not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"))):
            broken.append(f"line {node.lineno}: reads the private {node.attr}")
    return broken


@pytest.mark.parametrize("path", sorted(TESTS.rglob("*.py")),
                         ids=lambda p: str(p.relative_to(TESTS)))
def test_tests_use_fixtures_and_public_names_only(path: Path) -> None:
    assert rule_breaks(path) == []


def test_the_tests_rules_catch_a_private_read_and_a_conftest_import(tmp_path: Path) -> None:
    module = tmp_path / "test_bad.py"
    module.write_text("from tests.engine.conftest import make_engine\n"
                      "from scheduler.engine.loop import _first_of\n"
                      "def test_it(driver):\n    assert driver.loop._waiting\n")
    assert rule_breaks(module) == [
        "line 1: imports from tests.engine.conftest", "line 2: imports the private _first_of",
        "line 4: reads the private _waiting"]


BENCH = PACKAGE.parent / "bench"
# The benchmarks drive the service as its users and operators do: its services, its HTTP API
# and its engine's entry points (and the types those take and give), never its models, rows
# or statements, nor the engine's inner stages.
BENCH_FORBIDDEN = ("scheduler.db.models", "scheduler.db.bulk", "scheduler.db.compiled",
                   "scheduler.db.stored_jobs", "scheduler.db.executions", "scheduler.db.leases")
BENCH_ENGINE = {"scheduler.engine.node", "scheduler.engine.options", "scheduler.engine.leased"}
# One module per scenario: what two share is in the harness, the sites or the receivers.
BENCH_SCENARIOS = {"bench.api", "bench.executions", "bench.fire", "bench.history",
                   "bench.startup", "bench.ui"}


@pytest.mark.parametrize("path", sorted(BENCH.glob("*.py")), ids=lambda p: p.stem)
def test_benchmarks_use_only_the_services_and_the_engines_entry_points(path: Path) -> None:
    imported = all_imports(path)
    assert not {name for name in imported if name.startswith(BENCH_FORBIDDEN)}, \
        "a benchmark writes through the services, never rows of its own"
    engine = {name for name in imported if name.startswith("scheduler.engine")}
    assert engine <= BENCH_ENGINE, f"the engine's entry points are {sorted(BENCH_ENGINE)}"
    assert not imported & BENCH_SCENARIOS, "a scenario's helpers are no other one's"
