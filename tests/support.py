"""What tests share besides fixtures: the test database's address, tenants and their calls,
and the documents a job collection is made of."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import create_engine, text
from werkzeug.test import TestResponse

from scheduler.api.auth import PEER_CERT_ENVIRON
from scheduler.clock import FrozenClock
from scheduler.db.models import Base
from scheduler.db.schema import upgrade_schema
from scheduler.db.session import Database
from scheduler.security import pki
from scheduler.services.certificates import register_certificate
from scheduler.services.subscriptions import create_subscription
from scheduler.settings import running_in_ci

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



def copy_home_rows(source_url: str, target_url: str) -> None:
    """Give a PostgreSQL database the subscription and certificate `init` made in SQLite,
    its schema made first."""
    source, target = Database(source_url), Database(target_url)
    upgrade_schema(target)
    with source.snapshot() as src, target.transaction() as dst:
        for table in ("subscriptions", "management_certificates"):
            rows = src.execute(Base.metadata.tables[table].select()).mappings().all()
            if rows:
                dst.execute(Base.metadata.tables[table].insert(), [dict(r) for r in rows])
    source.dispose()
    target.dispose()


class OutageDatabase:
    """A PostgreSQL database of a test's own (never the shared one), which the test can cut
    off (it refuses connections and ends those it has) and let in again."""

    def __init__(self) -> None:
        require_postgres()
        self.name = f"outage_{uuid.uuid4().hex[:12]}"
        self.url = POSTGRES_URL.rsplit("/", 1)[0] + f"/{self.name}"
        self._admin = create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
        self._run(f"CREATE DATABASE {self.name}")

    def _run(self, *statements: str) -> None:
        with self._admin.connect() as conn:
            for statement in statements:
                conn.execute(text(statement), {"name": self.name} if ":name" in statement
                             else {})

    def cut_off(self) -> None:
        """The database refuses new connections and ends the ones it has."""
        self._run(f"ALTER DATABASE {self.name} ALLOW_CONNECTIONS false",
                  "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                  "WHERE datname = :name AND pid <> pg_backend_pid()")

    def let_in(self) -> None:
        """The database takes connections again."""
        self._run(f"ALTER DATABASE {self.name} ALLOW_CONNECTIONS true")

    def drop(self) -> None:
        """Drop the database, whoever is still connected."""
        self._run(f"ALTER DATABASE {self.name} ALLOW_CONNECTIONS true",
                  f"DROP DATABASE {self.name} WITH (FORCE)")
        self._admin.dispose()


@contextmanager
def outage_database(home: str | None = None) -> Iterator[OutageDatabase]:
    """A database of the test's own that it may cut off, holding the subscription and
    certificate of `home` if given; dropped afterwards."""
    database = OutageDatabase()
    try:
        if home is not None:
            copy_home_rows(f"sqlite:///{home}/scheduler.db", database.url)
        yield database
    finally:
        database.drop()


# Resource Manager's current api-version, which `Tenant.arm` sends unless told otherwise.
ARM_VERSION = "api-version=2016-03-01"


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

    def arm(self, method: str, path: str, body: Any = None, *,
            version: str | None = ARM_VERSION, **kwargs: Any) -> TestResponse:
        """A Resource Manager request under the subscription, with `api-version` (none if
        `version` is None); a body goes as JSON."""
        url = f"/subscriptions/{self.subscription_id}{path}"
        if version is not None:
            url += ("&" if "?" in url else "?") + version
        if body is not None:
            kwargs.update(data=json.dumps(body), content_type="application/json")
        return self.client.open(url, method=method, **kwargs)


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



CLOUD_SERVICE_XML = (
    '<CloudService xmlns="http://schemas.microsoft.com/windowsazure">'
    "<Label>cs</Label><Description>test</Description><GeoRegion>West Europe</GeoRegion>"
    "</CloudService>"
)


def collection_xml(plan: str = "Standard", quota: str = "", state: str | None = None) -> str:
    """A job collection document; with `state`, its `<State>` too."""
    state_element = "" if state is None else f"<State>{state}</State>"
    return ('<Resource xmlns="http://schemas.microsoft.com/windowsazure"><IntrinsicSettings>'
            f"<Plan>{plan}</Plan>{quota}</IntrinsicSettings>{state_element}</Resource>")


JOBS = "/cloudservices/cs1/resources/scheduler/~/jobcollections/jc1/jobs"



def http_job(**extra: Any) -> dict[str, Any]:
    """A valid HTTP job document."""
    job: dict[str, Any] = {
        "startTime": "2026-03-02T00:00:00Z",
        "action": {"type": "http", "request": {"uri": "http://example.com/hook",
                                               "method": "POST", "body": "hello"}},
    }
    job.update(extra)
    return job
