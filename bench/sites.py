"""What the benchmarks set up in a database and read back from it.

A site is one fresh database (a SQLite file, or a PostgreSQL schema made for the run) holding
a subscription, cloud service `cs1` and collection `jc1`, made through the services; its jobs
are created through `parse_job` and the services' `create_job`, copied in bulk and given new
schedules through `scheduler.services.bulk_jobs`. Nothing here writes a row itself.

The SQL of the benchmarks' own is here and only here, each statement a measurement's or a
fresh database's: a PostgreSQL schema made and dropped for a run (as the test suite's own
fixtures do), the server's version, what a long-running database would have done by itself
before a measured phase (`settle`), and the counts of what a run left behind (history rows,
executions by status and by node), which a benchmark polls while an engine runs: one plain
count of a table, rather than a service's page of one job, so that the polling weighs on
the database as little as it can.
"""

from __future__ import annotations

import sqlite3
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text

from bench.harness import POSTGRES_URL, BenchError
from scheduler.admin import init_home
from scheduler.api.schemas.jobs import parse_job
from scheduler.db.schema import upgrade_schema
from scheduler.db.session import Database
from scheduler.domain.durations import format_datetime
from scheduler.security import pki
from scheduler.security.secrets import SecretBox
from scheduler.services.bulk_jobs import copy_job, reschedule_jobs
from scheduler.services.certificates import register_certificate
from scheduler.services.cloudservices import (
    CloudServiceFields,
    begin_create_cloud_service,
    finish_create_cloud_service,
)
from scheduler.services.collections import (
    CollectionFields,
    begin_put_collection,
    finish_put_collection,
)
from scheduler.services.jobs import create_job, delete_job
from scheduler.services.leases import live_nodes
from scheduler.services.subscriptions import create_subscription
from scheduler.settings import PlanSettings, Settings, load_settings

NS = "http://schemas.microsoft.com/windowsazure"
CLOUD_SERVICE_XML = (
    f'<CloudService xmlns="{NS}"><Label>b</Label><Description>b</Description>'
    "<GeoRegion>West Europe</GeoRegion></CloudService>"
)
# A collection on the plan `Bench`, which each benchmark adds to its home's settings.
COLLECTION_XML = (
    f'<Resource xmlns="{NS}"><IntrinsicSettings><Plan>Bench</Plan></IntrinsicSettings>'
    "</Resource>"
)
# The plan `Bench` of the firing benchmarks: jobs recurring every second allowed.
PLAN_TOML = '\n[plans.Bench]\nmax_job_count = {count}\nmax_recurrence = "PT1S"\n'


def bench_home(home: Path, jobs: int, *more_settings: str) -> tuple[Settings, SecretBox]:
    """A fresh home whose plan `Bench` holds `jobs` jobs (and `more_settings` appended to its
    scheduler.toml): its settings, and the box that seals its secrets."""
    init_home(home, ["localhost", "127.0.0.1"], env={})
    with (home / "scheduler.toml").open("a") as config:
        config.write(PLAN_TOML.format(count=jobs))
        for text in more_settings:
            config.write(text)
    settings = load_settings(home, env={})
    return settings, SecretBox.from_file(settings.path(settings.security.secret_key_file))
CREATE_BATCH = 1_000
CLOUD_SERVICE, COLLECTION = "cs1", "jc1"
# Where a job made only to be copied starts: far from anything a benchmark fires.
FAR = datetime(2099, 1, 1, tzinfo=UTC)
EVER = datetime(2000, 1, 1, tzinfo=UTC)  # before any heartbeat: every node's counts


def now_utc() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


def whole_second(moment: datetime) -> datetime:
    """`moment` rounded up to the next whole second."""
    return moment.replace(microsecond=0) + timedelta(seconds=1)


def http_document(url: str, start: datetime, recurrence: dict[str, Any] | None = None
                  ) -> dict[str, Any]:
    """A job POSTing its execution id as JSON to `url`, without retries, from `start` on:
    every call fills a placeholder, as most jobs' calls do."""
    document: dict[str, Any] = {
        "startTime": format_datetime(start),
        "action": {"type": "http", "request": {
            "uri": url, "method": "POST", "headers": {"Content-Type": "application/json"},
            "body": '{"run": "{{execution.id}}"}'}, "retryPolicy": {"retryType": "none"}},
    }
    if recurrence is not None:
        document["recurrence"] = recurrence
    return document


# --- PostgreSQL schemas --------------------------------------------------------------------

def new_postgres_schema(prefix: str) -> tuple[str, str]:
    """A fresh, empty schema of the PostgreSQL test database: its name, and the database URL
    that works in it."""
    schema = f"{prefix}_{uuid.uuid4().hex[:8]}"
    admin = create_engine(POSTGRES_URL, connect_args={"connect_timeout": 5})
    try:
        with admin.begin() as conn:
            conn.execute(text(f"CREATE SCHEMA {schema}"))
    finally:
        admin.dispose()
    return schema, f"{POSTGRES_URL}?options=-csearch_path%3D{schema}"


def drop_postgres_schemas(schemas: Iterable[str]) -> None:
    """Drop schemas made by `new_postgres_schema`, with all they hold."""
    names = list(schemas)
    if not names:
        return
    admin = create_engine(POSTGRES_URL)
    try:
        with admin.begin() as conn:
            for schema in names:
                conn.execute(text(f"DROP SCHEMA IF EXISTS {schema} CASCADE"))
    finally:
        admin.dispose()


def postgres_version() -> str:
    """The PostgreSQL server's version."""
    engine = create_engine(POSTGRES_URL)
    try:
        with engine.connect() as conn:
            return f"PostgreSQL {conn.execute(text('SHOW server_version')).scalar()}"
    finally:
        engine.dispose()


# --- sites ---------------------------------------------------------------------------------

@dataclass
class Site:
    """One fresh database with a subscription, a cloud service and a job collection."""

    url: str
    db: Database
    subscription_id: str
    label: str
    plans: Mapping[str, PlanSettings]


@dataclass
class Backend:
    """SQLite files in the home, or schemas of the PostgreSQL test database."""

    kind: str
    home: Path
    settings: Settings
    schemas: list[str] = field(default_factory=list)
    sites: list[Site] = field(default_factory=list)

    def version(self) -> str:
        """The database server's version."""
        if self.kind == "sqlite":
            return f"SQLite {sqlite3.sqlite_version}"
        return postgres_version()

    def new_site(self, label: str) -> Site:
        """A fresh database for one phase: schema, tenant, cloud service, collection."""
        if self.kind == "sqlite":
            url = f"sqlite:///{self.home / f'{label}.db'}"
        else:
            schema, url = new_postgres_schema(f"bench_fire_{label}")
            self.schemas.append(schema)
        db = Database(url)
        upgrade_schema(db)
        now = now_utc()
        with db.transaction() as session:
            subscription = create_subscription(session, "bench", now)
            # The engine's `serve` refuses a database that does not know the home's admin.
            register_certificate(session, subscription, pki.load_certificate(
                self.settings.path(self.settings.security.admin_cert_file).read_bytes()), now)
            service = begin_create_cloud_service(
                session, subscription, CLOUD_SERVICE,
                CloudServiceFields("b", "b", "West Europe"), now)
            service_id = service.id
        finish_create_cloud_service(db, {"cloud_service_id": service_id}, lambda: None)
        with db.transaction() as session:
            collection, _ = begin_put_collection(
                session, subscription, CLOUD_SERVICE, COLLECTION, CollectionFields(plan="Bench"),
                self.settings.plans, now)
            collection_id = collection.id
        finish_put_collection(db, {"collection_id": collection_id}, lambda: None)
        site = Site(url, db, subscription, label, self.settings.plans)
        self.sites.append(site)
        return site

    def close(self) -> None:
        """Close every site and drop the schemas made for the run."""
        for site in self.sites:
            site.db.dispose()
        drop_postgres_schemas(self.schemas)
        self.schemas.clear()


def create_jobs(site: Site, document: dict[str, Any], count: int, prefix: str,
                box: SecretBox, settings: Settings) -> float:
    """Create `count` jobs through `parse_job` and `create_job`; returns jobs per second."""
    began = time.monotonic()
    for first in range(0, count, CREATE_BATCH):
        now = now_utc()
        with site.db.transaction() as session:
            conn = session.connection()
            for number in range(first, min(count, first + CREATE_BATCH)):
                job_id = f"{prefix}{number:07d}"
                spec = parse_job(document, now=now, job_id=job_id,
                                 brokers=settings.broker_kinds, private_networks=True)
                if create_job(conn, site.subscription_id, CLOUD_SERVICE, COLLECTION, job_id,
                              spec, box, settings.plans, now) is None:
                    raise BenchError(f"the job {job_id} existed already")
    return count / (time.monotonic() - began)


def copy_jobs(site: Site, source: str, rows: Iterable[tuple[str, datetime]]) -> int:
    """Copy the job `source` under the ids of `rows`, each due at the time given with it
    (its start); how many were made."""
    with site.db.transaction() as session:
        return copy_job(session, site.subscription_id, CLOUD_SERVICE, COLLECTION, source,
                        rows, site.plans, now_utc())


def add_jobs(site: Site, document: dict[str, Any], rows: Iterable[tuple[str, datetime]],
             box: SecretBox, settings: Settings) -> int:
    """Jobs like `document` (a one-shot job) named and due as `rows` say; how many. One is
    made through `create_job`, far from its time, copied, and deleted."""
    template = f"template-{uuid.uuid4().hex[:8]}"
    document = {**document, "startTime": format_datetime(FAR)}
    create_jobs(site, document, 1, template, box, settings)
    made = copy_jobs(site, f"{template}0000000", rows)
    with site.db.transaction() as session:
        delete_job(session.connection(), site.subscription_id, CLOUD_SERVICE, COLLECTION,
                   f"{template}0000000")
    return made


def reschedule(site: Site, document: dict[str, Any],
               brokers: dict[str, str] | None = None) -> datetime:
    """Give every job of the site `document`'s start time and recurrence, as a replace would
    store them; when the first of them fires."""
    now = now_utc()
    spec = parse_job(document, now=now, brokers=brokers, private_networks=True)
    with site.db.transaction() as session:
        fire = reschedule_jobs(session, site.subscription_id, CLOUD_SERVICE, COLLECTION,
                               spec.start_time, spec.recurrence, site.plans, now)
    if fire is None:
        raise BenchError("the rescheduled jobs never fire")
    return fire


# --- measurements --------------------------------------------------------------------------

def settle(site: Site) -> None:
    """Before a measured phase, after its jobs are in: what a long-running database would
    have done by itself, and a checkpoint, so that one forced by the write-ahead log of the
    phases before (PostgreSQL's default `max_wal_size` is 1 GB) does not start inside this
    one; one that did raised the steady p99 from about 80 to 171 ms."""
    if site.db.is_sqlite:
        with site.db.read_engine.connect() as conn:
            conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
        return
    with site.db.engine.connect() as conn:
        conn = conn.execution_options(isolation_level="AUTOCOMMIT")
        conn.exec_driver_sql("VACUUM ANALYZE jobs")
        conn.exec_driver_sql("CHECKPOINT")


def wait_for_history(site: Site, rows: int, seconds: float = 30.0) -> float:
    """Poll until the site has `rows` history rows (or `seconds` pass); when, in epoch
    seconds."""
    deadline = time.monotonic() + seconds
    while history_count(site) < rows and time.monotonic() < deadline:
        time.sleep(0.1)
    return time.time()


def history_count(site: Site) -> int:
    """Job history rows of the site."""
    with site.db.snapshot() as session:
        return int(session.execute(text("SELECT count(*) FROM job_history")).scalar() or 0)


def execution_statuses(site: Site) -> dict[str, int]:
    """Executions of the site by status."""
    return _executions_by(site, "status")


def executions_by_node(site: Site) -> dict[str, int]:
    """Executions of the site by the node that ran them."""
    return _executions_by(site, "node")


def _executions_by(site: Site, column: str) -> dict[str, int]:
    with site.db.snapshot() as session:
        rows = session.execute(text(
            f"SELECT {column}, count(*) FROM executions GROUP BY {column}")).all()
    return {str(value): int(count) for value, count in rows}


def wait_for_engine_nodes(site: Site, count: int, deadline: float) -> list[str]:
    """Poll until `count` engine nodes have a heartbeat in the site's database; their ids."""
    while True:
        with site.db.snapshot() as session:
            nodes = [node.node_id for node in live_nodes(session, EVER)]
        if len(nodes) >= count:
            return nodes
        if time.monotonic() > deadline:
            raise BenchError(f"{count} engine nodes expected, {len(nodes)} came up")
        time.sleep(0.1)
