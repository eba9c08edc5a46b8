"""Real `scheduler serve` processes over HTTPS, for end-to-end tests."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import OperationalError

from scheduler.admin import init_home
from tests.e2e.support import ServerProcess, as_new_subscription, free_port
from tests.support import POSTGRES_URL, require_postgres


@pytest.fixture
def server_factory(tmp_path: Path) -> Iterator[Any]:
    """Make (and afterwards stop) server processes on fresh homes."""
    servers: list[ServerProcess] = []

    def make(home: Path | None = None, env: dict[str, str] | None = None,
             start: bool = True, role: str = "all", args: list[str] | None = None
             ) -> ServerProcess:
        target = home or tmp_path / f"home{len(servers)}"
        merged = {k: v for k, v in os.environ.items() if not k.startswith("SCHEDULER_")}
        merged.update(env or {})
        info = init_home(target, ["localhost", "127.0.0.1"], env=merged) if home is None \
            else servers[0].info
        server = ServerProcess(target, info, free_port(), merged, role=role, args=args or [])
        servers.append(server)
        if start:
            server.start()
        return server

    yield make
    for server in servers:
        server.stop()


@pytest.fixture
def server(server_factory: Any) -> ServerProcess:
    """One running server on a fresh SQLite home."""
    result: ServerProcess = server_factory()
    return result


def start_on_fresh_home(directory: Path, env: dict[str, str] | None = None) -> ServerProcess:
    """A running server (API and engine) on a fresh home in `directory`, its database the
    home's SQLite file unless `env` names another."""
    merged = {k: v for k, v in os.environ.items() if not k.startswith("SCHEDULER_")}
    merged.update(env or {})
    home = directory / "home"
    server = ServerProcess(home, init_home(home, ["localhost", "127.0.0.1"], env=merged),
                           free_port(), merged)
    server.start()
    return server


@pytest.fixture(scope="module")
def shared_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One running server on a fresh SQLite home, shared by the tests of a module that only
    read from it (what they register or change, no other test of the module sees)."""
    server = start_on_fresh_home(tmp_path_factory.mktemp("shared"))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def shared_server_factory(tmp_path_factory: pytest.TempPathFactory
                          ) -> Iterator[Callable[..., ServerProcess]]:
    """Start servers on fresh homes (with more settings in `env`), shared by the tests of a
    module and stopped after its last; each test sees them through a subscription of its own
    (`as_new_subscription`)."""
    servers: list[ServerProcess] = []

    def make(env: dict[str, str] | None = None) -> ServerProcess:
        server = start_on_fresh_home(tmp_path_factory.mktemp("shared"), env)
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.stop()


@pytest.fixture
def own_subscription(shared_server: ServerProcess, tmp_path: Path) -> ServerProcess:
    """The module's shared server, as a subscription of this test's own sees it: its cloud
    services, collections, jobs and certificates are the test's alone."""
    return as_new_subscription(shared_server, tmp_path)


@pytest.fixture
def postgres_schema() -> Iterator[tuple[str, str]]:
    """A fresh PostgreSQL schema: (its name, a database URL that uses it)."""
    require_postgres()
    schema = f"nodes_{uuid.uuid4().hex[:12]}"
    admin = create_engine(POSTGRES_URL)
    with admin.begin() as conn:
        conn.execute(text(f"CREATE SCHEMA {schema}"))
    yield schema, f"{POSTGRES_URL}?options=-csearch_path%3D{schema}"
    drop_schema(admin, schema)
    admin.dispose()


def drop_schema(admin: Any, schema: str) -> None:
    """Drop a test schema. Servers of the test may still be running (fixtures are torn down
    in reverse order), so the sessions holding locks in it are ended first, and the drop is
    tried again if one of them took a lock meanwhile."""
    for attempt in range(5):
        try:
            with admin.begin() as conn:
                conn.execute(text(
                    "SELECT pg_terminate_backend(l.pid) FROM pg_locks l "
                    "JOIN pg_class c ON c.oid = l.relation "
                    "JOIN pg_namespace n ON n.oid = c.relnamespace "
                    "WHERE n.nspname = :schema AND l.pid <> pg_backend_pid()"),
                    {"schema": schema})
                conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
            return
        except OperationalError:
            if attempt == 4:
                raise


E2E_DIR = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test under tests/e2e starts real processes: mark it `e2e`."""
    for item in items:
        if E2E_DIR in item.path.parents:
            item.add_marker(pytest.mark.e2e)
