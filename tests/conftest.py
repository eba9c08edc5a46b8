"""Fixtures: a home, a database (SQLite and PostgreSQL), a fake clock, the app and clients."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import hypothesis
import pytest
from flask import Flask
from playwright.sync_api import Browser, BrowserType, Playwright, sync_playwright

from scheduler.admin import init_home
from scheduler.app import create_app
from scheduler.clock import FrozenClock
from scheduler.db.schema import require_current_schema
from scheduler.db.session import Database
from scheduler.settings import DatabaseSettings, Settings, load_settings, running_in_ci
from tests.support import (
    CLOUD_SERVICE_XML,
    START,
    Tenant,
    collection_xml,
    copy_home_rows,
    fresh_postgres_schema,
    new_tenant,
)

# The engine's fixtures (a node stepped on the fake clock, loopback receivers) serve the
# API's, the actions' and the end-to-end tests as well; the served home of the client's tests
# serves the end-to-end tests of the command line too.
pytest_plugins = ["tests.engine.harness", "tests.client.served", "tests.mail"]


# The fast lane (`make test-fast`) runs with `--hypothesis-profile fast`: a quarter of
# hypothesis' default 100 examples per property. `make test` loads no profile and keeps the
# default; a test that wants more than the default asks for a multiple of
# `hypothesis.settings.default.max_examples`, so that it shrinks with the profile.
hypothesis.settings.register_profile("fast", max_examples=25)


# A test runs on PostgreSQL when one of its parameters names it, or a fixture gives it the
# machine's server: `-m "not postgres"` deselects those (the fast lane's SQLite only).
POSTGRES_PARAMS = {"postgresql", "outage"}
POSTGRES_FIXTURES = {"pg", "postgres_schema", "outage"}
# Outside tests/e2e (whose conftest marks its own), the fixtures that start `scheduler serve`.
SERVED_FIXTURES = {"served", "engineless"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark the tests that use PostgreSQL `postgres`, and those that run against a real
    `scheduler serve` `e2e`."""
    for item in items:
        callspec = getattr(item, "callspec", None)
        params = callspec.params.values() if callspec is not None else ()
        fixtures = set(getattr(item, "fixturenames", ()))
        if any(isinstance(value, str) and value in POSTGRES_PARAMS for value in params) \
                or fixtures & POSTGRES_FIXTURES:
            item.add_marker(pytest.mark.postgres)
        if fixtures & SERVED_FIXTURES:
            item.add_marker(pytest.mark.e2e)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """Under CI nothing may be skipped: a skip there is a failure."""
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    if running_in_ci() and report.skipped and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        report.longrepr = f"skipped under CI=true: {report.longrepr}"


@pytest.fixture(scope="session")
def home_template(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One initialised home, copied for each test (key generation is not free)."""
    home = tmp_path_factory.mktemp("template") / "home"
    return init_home(home, ["localhost", "127.0.0.1"], env={})


@pytest.fixture
def home(tmp_path: Path, home_template: dict[str, Any]) -> dict[str, Any]:
    """A fresh home with its own SQLite database, subscription and admin certificate."""
    target = tmp_path / "home"
    shutil.copytree(home_template["home"], target)
    info = dict(home_template)
    info.update(home=str(target), caCert=str(target / "ca.pem"),
                clientCert=str(target / "admin.pem"))
    return info


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, home: dict[str, Any]) -> Iterator[str]:
    """The home's SQLite database, or a fresh PostgreSQL schema holding the same rows."""
    if request.param == "sqlite":
        yield f"sqlite:///{Path(home['home']) / 'scheduler.db'}"
        return
    with fresh_postgres_schema("t") as url:
        copy_home_rows(f"sqlite:///{Path(home['home']) / 'scheduler.db'}", url)
        yield url


@pytest.fixture
def settings(home: dict[str, Any], database_url: str) -> Settings:
    """The home's settings, pointed at the test database; jobs may call the suite's
    receivers on loopback."""
    base = load_settings(home["home"], env={})
    return replace(base, database=DatabaseSettings(url=database_url),
                   outbound=replace(base.outbound, allow_private_networks=True))


@pytest.fixture
def clock() -> FrozenClock:
    """A clock that moves only when the test moves it."""
    return FrozenClock(START)


@pytest.fixture
def db(settings: Settings) -> Iterator[Database]:
    """The test database, at the schema's head revision."""
    database = Database(settings.database_url)
    # `init` (SQLite) and `copy_home_rows` (PostgreSQL) made it at the head: checked here,
    # in a tenth of the time an upgrade that finds nothing to do takes.
    require_current_schema(database, "scheduler db upgrade")
    yield database
    database.dispose()


@pytest.fixture
def app(settings: Settings, clock: FrozenClock, db: Database) -> Flask:
    """The management API, with operations run inside the request."""
    return create_app(settings, clock, db=db, background=False)


@pytest.fixture
def tenant(app: Flask, db: Database, clock: FrozenClock) -> Tenant:
    """One tenant."""
    return new_tenant(app, db, clock, "first")


@pytest.fixture
def other_tenant(app: Flask, db: Database, clock: FrozenClock) -> Tenant:
    """A second tenant, to show isolation."""
    return new_tenant(app, db, clock, "second")


@pytest.fixture
def collection(tenant: Tenant) -> Tenant:
    """A tenant with cloud service `cs1` holding a Standard collection `jc1`."""
    assert tenant.call("PUT", "/cloudservices/cs1", CLOUD_SERVICE_XML).status_code == 202
    response = tenant.call("PUT", "/cloudservices/cs1/resources/scheduler/jobcollections/jc1",
                           collection_xml())
    assert response.status_code == 202, response.data
    return tenant




# Debian's Chromium, which `make test` installs: Playwright drives it and never downloads a
# browser of its own.
CHROMIUM = Path("/usr/bin/chromium")


# pytest-playwright's fixtures (`new_context`, `context`, `page`, and its options: traces and
# screenshots of a failed test, `--headed`) stand on the four below. Its own start Playwright
# once for the whole session; its synchronous API runs an event loop of its own, which, left
# running after the browser tests, would keep every later test from running one. So here
# Playwright starts and stops with each browser test.

@pytest.fixture
def playwright() -> Iterator[Playwright]:
    """Playwright, for one test."""
    with sync_playwright() as started:
        yield started


@pytest.fixture
def browser_type(playwright: Playwright) -> BrowserType:
    """Chromium, the one browser the tests drive."""
    return playwright.chromium


@pytest.fixture(scope="session")
def browser_type_launch_args() -> dict[str, Any]:
    """Debian's Chromium; as root it runs without its sandbox, which needs user namespaces
    that root in a container may not have."""
    return {"executable_path": str(CHROMIUM),
            "args": ["--no-sandbox"] if os.geteuid() == 0 else []}


@pytest.fixture
def browser(browser_type: BrowserType, browser_type_launch_args: dict[str, Any]
            ) -> Iterator[Browser]:
    """Debian's Chromium, for one test."""
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is not installed (make test installs Debian's chromium)")
    launched = browser_type.launch(**browser_type_launch_args)
    yield launched
    launched.close()


@pytest.fixture
def browser_context_args() -> dict[str, Any]:
    """What every context is made with: the service's CA is not the browser's to trust; what
    is tested is what the service does with the requests that reach it."""
    return {"ignore_https_errors": True}
