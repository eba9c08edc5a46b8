"""The layout's rules, held by reading every module's imports."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "scheduler"

# What each layer may import from the project, besides itself.
ALLOWED = {
    "domain": set(),
    "actions": {"domain", "clock"},
    "security": {"domain", "clock"},
    "db": {"domain", "clock"},
    "services": {"domain", "db", "security", "errors", "settings", "clock"},
    "engine": {"domain", "db", "services", "security", "clock", "settings", "actions"},
    "api": {"domain", "db", "services", "security", "errors", "settings", "clock"},
    # A client of the HTTPS API, never of the database.
    "client": {"settings"},
}
# Wiring, configuration, the one clock, the one error tree, and how processes report.
TOP_LEVEL = {"__init__", "app", "cli", "clock", "errors", "settings", "telemetry"}
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
    assert not outside, f"{layer} may not import {sorted(outside)}"
    if layer == "engine" and path.stem not in ENGINE_WIRING:
        actions = {m for m in imported if layer_of(m) == "actions"}
        assert actions <= ENGINE_ACTIONS, \
            f"the engine knows actions only through {sorted(ENGINE_ACTIONS)}: {sorted(actions)}"


def test_the_rules_catch_a_forbidden_import(tmp_path: Path) -> None:
    module = tmp_path / "bad.py"
    module.write_text("from scheduler.engine.node import Engine\nimport scheduler.api.jobs\n")
    assert project_imports(module) == {"scheduler.engine.node", "scheduler.api.jobs"}
