"""Fixtures: a home, a database (SQLite and PostgreSQL), a fake clock, the app and clients."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import create_engine, text
from werkzeug.test import TestResponse

from scheduler.api.auth import PEER_CERT_ENVIRON
from scheduler.app import create_app
from scheduler.cli import init_home
from scheduler.clock import FrozenClock
from scheduler.db.schema import upgrade_schema
from scheduler.db.session import Database
from scheduler.security import pki
from scheduler.services.certificates import register_certificate
from scheduler.services.subscriptions import create_subscription
from scheduler.settings import DatabaseSettings, Settings, load_settings, running_in_ci

POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
START = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)


def postgres_available() -> bool:
    """Whether the PostgreSQL server of the test machine answers."""
    try:
        engine = create_engine(POSTGRES_URL, connect_args={"connect_timeout": 3})
        with engine.connect():
            pass
        engine.dispose()
        return True
    except Exception:
        return False


def require_postgres() -> None:
    """Skip without PostgreSQL, except under CI, where a missing server is a failure."""
    if postgres_available():
        return
    if running_in_ci():
        pytest.fail("PostgreSQL is not reachable at 127.0.0.1:5432 and CI=true")
    pytest.skip("PostgreSQL is not reachable at 127.0.0.1:5432")


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
    import shutil

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
        _copy_home_rows(f"sqlite:///{Path(home['home']) / 'scheduler.db'}", url)
        yield url


@contextmanager
def fresh_postgres_schema(prefix: str) -> Iterator[str]:
    """A new, empty PostgreSQL schema for one test: a database URL that uses it; dropped
    afterwards."""
    require_postgres()
    schema = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin = create_engine(POSTGRES_URL)
    with admin.begin() as conn:
        conn.execute(text(f"CREATE SCHEMA {schema}"))
    try:
        yield f"{POSTGRES_URL}?options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as conn:
            conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()


def _copy_home_rows(source_url: str, target_url: str) -> None:
    """Give a PostgreSQL schema the subscription and certificate `init` made in SQLite."""
    from scheduler.db.models import Base

    source, target = Database(source_url), Database(target_url)
    upgrade_schema(target)
    with source.snapshot() as src, target.transaction() as dst:
        for table in ("subscriptions", "management_certificates"):
            rows = src.execute(Base.metadata.tables[table].select()).mappings().all()
            if rows:
                dst.execute(Base.metadata.tables[table].insert(), [dict(r) for r in rows])
    source.dispose()
    target.dispose()


@pytest.fixture
def settings(home: dict[str, Any], database_url: str) -> Settings:
    """The home's settings, pointed at the test database."""
    base = load_settings(home["home"], env={})
    return replace(base, database=DatabaseSettings(url=database_url))


@pytest.fixture
def clock() -> FrozenClock:
    """A clock that moves only when the test moves it."""
    return FrozenClock(START)


@pytest.fixture
def db(settings: Settings) -> Iterator[Database]:
    """The test database."""
    database = Database(settings.database_url)
    upgrade_schema(database)
    yield database
    database.dispose()


@pytest.fixture
def app(settings: Settings, clock: FrozenClock, db: Database) -> Flask:
    """The management API, with operations run inside the request."""
    return create_app(settings, clock, db=db, background=False)


@dataclass
class Tenant:
    """A subscription with a certificate, and a client that presents it."""

    subscription_id: str
    certificate: pki.IssuedCertificate
    client: FlaskClient

    def url(self, path: str) -> str:
        """A path under the subscription."""
        return f"/{self.subscription_id}{path}"

    def call(self, method: str, path: str, body: Any = None, **kwargs: Any) -> TestResponse:
        """Send a request; dicts and lists go as JSON, strings as XML."""
        if isinstance(body, dict | list):
            kwargs.setdefault("data", json.dumps(body))
            kwargs.setdefault("content_type", "application/json")
        elif isinstance(body, str | bytes):
            kwargs.setdefault("data", body)
            kwargs.setdefault("content_type", "application/xml")
        return self.client.open(self.url(path), method=method, **kwargs)


def client_with_certificate(app: Flask, certificate: pki.IssuedCertificate | None
                            ) -> FlaskClient:
    """A test client whose requests carry a client certificate, as TLS would hand it over."""
    client = app.test_client()
    if certificate is not None:
        client.environ_base[PEER_CERT_ENVIRON] = pki.der_bytes(certificate.certificate)
    return client


def new_tenant(app: Flask, db: Database, clock: FrozenClock, name: str = "tenant") -> Tenant:
    """A new subscription with a self-signed certificate registered to it."""
    certificate = pki.issue_client_certificate(None, name, clock.now())
    with db.transaction() as session:
        subscription_id = create_subscription(session, name, clock.now())
        register_certificate(session, subscription_id, certificate.certificate, clock.now())
    return Tenant(subscription_id, certificate, client_with_certificate(app, certificate))


@pytest.fixture
def tenant(app: Flask, db: Database, clock: FrozenClock) -> Tenant:
    """One tenant."""
    return new_tenant(app, db, clock, "first")


@pytest.fixture
def other_tenant(app: Flask, db: Database, clock: FrozenClock) -> Tenant:
    """A second tenant, to show isolation."""
    return new_tenant(app, db, clock, "second")


CLOUD_SERVICE_XML = (
    '<CloudService xmlns="http://schemas.microsoft.com/windowsazure">'
    "<Label>cs</Label><Description>test</Description><GeoRegion>West Europe</GeoRegion>"
    "</CloudService>"
)


def collection_xml(plan: str = "Standard", quota: str = "") -> str:
    """A job collection document."""
    return ('<Resource xmlns="http://schemas.microsoft.com/windowsazure"><IntrinsicSettings>'
            f"<Plan>{plan}</Plan>{quota}</IntrinsicSettings></Resource>")


JOBS = "/cloudservices/cs1/resources/scheduler/~/jobcollections/jc1/jobs"


@pytest.fixture
def collection(tenant: Tenant) -> Tenant:
    """A tenant with cloud service `cs1` holding a Standard collection `jc1`."""
    assert tenant.call("PUT", "/cloudservices/cs1", CLOUD_SERVICE_XML).status_code == 202
    response = tenant.call("PUT", "/cloudservices/cs1/resources/scheduler/jobcollections/jc1",
                           collection_xml())
    assert response.status_code == 202, response.data
    return tenant


def http_job(**extra: Any) -> dict[str, Any]:
    """A valid HTTP job document."""
    job: dict[str, Any] = {
        "startTime": "2026-03-02T00:00:00Z",
        "action": {"type": "http", "request": {"uri": "http://example.com/hook",
                                               "method": "POST", "body": "hello"}},
    }
    job.update(extra)
    return job
