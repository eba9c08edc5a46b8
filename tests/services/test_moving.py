"""Moving a home: `scheduler export` then `scheduler import`, from SQLite to PostgreSQL and
back, carries everything; what is refused writes nothing."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import InvalidToken
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import inspect, select, text

from scheduler.actions.http import HttpCaller
from scheduler.actions.registry import standard_actions
from scheduler.admin import init_home
from scheduler.api.auth import PEER_CERT_ENVIRON
from scheduler.app import create_app
from scheduler.cli import main
from scheduler.clock import FrozenClock, SystemClock
from scheduler.db.models import (
    Calendar,
    CloudService,
    Execution,
    HistoryEntry,
    Job,
    JobCollection,
    ManagementCertificate,
    NotificationChannel,
    RevokedCertificate,
    ServicePrincipal,
    Subscription,
)
from scheduler.db.session import Database
from scheduler.db.stored_channels import open_channel
from scheduler.db.stored_jobs import dump_definition, open_definition
from scheduler.engine.node import Engine
from scheduler.engine.options import engine_options
from scheduler.security import pki
from scheduler.security.secrets import SecretBox
from scheduler.services.certificates import delete_certificate, register_certificate
from scheduler.services.leases import Heartbeats
from scheduler.services.principals import (
    NewPrincipal,
    create_principal,
    issue_token_for_secret,
    sha256_hex,
)
from scheduler.settings import EngineSettings, load_settings
from tests.engine.harness import MakeDriver, NodeDriver, Receiver
from tests.support import CLOUD_SERVICE_XML, START, collection_xml, fresh_postgres_schema

PASSPHRASE = "correct horse battery staple"
SERVICE = "/cloudservices/{service}"
COLLECTION = "/cloudservices/{service}/resources/scheduler/jobcollections/{collection}"
JOBS = "/cloudservices/{service}/resources/scheduler/~/jobcollections/{collection}/jobs"
INLINE_RUNS = "/cloudservices/cs1/resources/scheduler/~/jobcollections/jc1/executions"
# A collection in Resource Manager's API, its group being its cloud service.
ARM_COLLECTION = ("/subscriptions/{subscription}/resourceGroups/{service}/providers/"
                  "Microsoft.Scheduler/jobCollections/{collection}?api-version=2016-03-01")
TAGS = {"team": "ops", "cost-centre": "4711"}
# Three collections holding 200 jobs between them.
COLLECTIONS = (("cs1", "jc1", "P20Premium", 100), ("cs1", "jc2", "P20Premium", 60),
               ("cs2", "jc3", "Standard", 40))
AUTH = ("mover", "s3cret-pass")

only_sqlite_first = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


@dataclass
class Admin:
    """The home's subscription, called with its admin certificate."""

    subscription_id: str
    client: FlaskClient

    def call(self, method: str, path: str, body: Any = None) -> Any:
        """A request under the subscription; dicts go as JSON, strings as XML."""
        kwargs: dict[str, Any] = {}
        if isinstance(body, dict):
            kwargs = {"data": json.dumps(body), "content_type": "application/json"}
        elif isinstance(body, str):
            kwargs = {"data": body, "content_type": "application/xml"}
        return self.client.open(f"/{self.subscription_id}{path}", method=method, **kwargs)

    def disable_with_tags(self, service: str, collection: str) -> None:
        """Disable a collection through Resource Manager's API, and tag it."""
        response = self.client.patch(
            ARM_COLLECTION.format(subscription=self.subscription_id, service=service,
                                  collection=collection),
            json={"tags": TAGS, "properties": {"state": "Disabled"}})
        assert response.status_code == 200, response.data
        assert response.get_json()["properties"]["state"] == "Disabled"


def admin_of(app: Flask, db: Database, clock: FrozenClock, home: dict[str, Any]) -> Admin:
    """The home's subscription, called with a certificate valid at the fake clock's time
    (the admin certificate `init` made is valid from the real one's) registered to it."""
    certificate = pki.issue_client_certificate(None, "operator", clock.now())
    with db.transaction() as session:
        register_certificate(session, home["subscriptionId"], certificate.certificate,
                             clock.now())
    client = app.test_client()
    client.environ_base[PEER_CERT_ENVIRON] = pki.der_bytes(certificate.certificate)
    return Admin(home["subscriptionId"], client)


def far_job(index: int, receiver: Receiver) -> dict[str, Any]:
    """A job that does not come due in the test: every tenth with Basic authentication,
    every seventh a storage queue message with its SAS token, some recurring, some
    disabled."""
    job: dict[str, Any] = {"startTime": "2027-01-01T00:00:00Z", "action": {
        "type": "http", "request": {"uri": receiver.url(f"/far/{index}"), "method": "POST",
                                    "body": f"job {index}"}}}
    if index % 10 == 0:
        job["action"]["request"]["authentication"] = {
            "type": "Basic", "username": f"user{index}", "password": f"pass-{index}"}
    if index % 7 == 0:
        job["action"] = {"type": "storageQueue", "queueMessage": {
            "storageAccount": "acct1", "queueName": "jobs", "message": f"m{index}",
            "sasToken": f"sv=2019&sig=secret{index}"}}
    if index % 3 == 0:
        job["recurrence"] = {"frequency": "hour", "interval": 1 + index % 5}
    if index % 11 == 0:
        job["state"] = "disabled"
    return job


def firing_jobs(receiver: Receiver) -> dict[str, dict[str, Any]]:
    """The jobs that fire in the test: a one-shot one, a recurring one, and a recurring one
    that authenticates at its target."""
    def call(path: str) -> dict[str, Any]:
        return {"type": "http", "request": {"uri": receiver.url(path), "method": "POST",
                                            "body": path}}
    every_minute = {"frequency": "minute", "interval": 1}
    authenticated = call("/auth")
    authenticated["request"]["authentication"] = {"type": "Basic", "username": AUTH[0],
                                                  "password": AUTH[1]}
    return {
        "once": {"startTime": "2026-03-01T12:00:30Z", "action": call("/once")},
        "tick": {"startTime": "2026-03-01T12:00:30Z", "action": call("/tick"),
                 "recurrence": every_minute},
        "auth": {"startTime": "2026-03-01T12:00:30Z", "action": authenticated,
                 "recurrence": every_minute},
    }


def watched_job(admin: Admin, where: dict[str, str], receiver: Receiver) -> dict[str, Any]:
    """Give a collection a calendar, two channels (one signed, one Slack: both with secrets)
    and default alert rules; a job that skips the calendar's days and alerts a channel."""
    collection = JOBS.format(**where).rsplit("/", 1)[0]
    assert admin.call("PUT", f"{collection}/calendars/holidays", {
        "timeZone": "Europe/Berlin", "dates": ["2026-12-25"],
        "rules": ["FREQ=YEARLY;BYMONTH=1;BYMONTHDAY=1"]}).status_code == 201
    for name, channel in (("ops", {"type": "webhook", "url": receiver.url("/alerts"),
                                   "secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}),
                          ("chat", {"type": "slack", "url": receiver.url("/services/T/B/x")})):
        response = admin.call("PUT", f"{collection}/notificationChannels/{name}", channel)
        assert response.status_code == 201, response.data
    assert admin.call("PUT", f"{collection}/defaultAlerts", {
        "on": ["failed", "missed"], "channels": ["chat"], "realert": "PT1H"}).status_code == 200
    job = far_job(1, receiver)
    job["recurrence"] = {"frequency": "day", "excludeCalendars": ["holidays"]}
    job["alerts"] = {"on": ["failed", "recovered"], "afterConsecutive": 2, "channels": ["ops"]}
    return job


def fill(admin: Admin, receiver: Receiver) -> None:
    """Three collections of 200 jobs, the firing ones in jc1."""
    for service in ("cs1", "cs2"):
        assert admin.call("PUT", SERVICE.format(service=service),
                          CLOUD_SERVICE_XML).status_code == 202
    index = 0
    for service, collection, plan, count in COLLECTIONS:
        where = {"service": service, "collection": collection}
        response = admin.call("PUT", COLLECTION.format(**where), collection_xml(plan))
        assert response.status_code == 202, response.data
        jobs = firing_jobs(receiver) if collection == "jc1" else {}
        if collection == "jc2":
            jobs["watched"] = watched_job(admin, where, receiver)
        while len(jobs) < count:
            jobs[f"job-{index}"] = far_job(index, receiver)
            index += 1
        for job_id, job in jobs.items():
            response = admin.call("PUT", f"{JOBS.format(**where)}/{job_id}", job)
            assert response.status_code in (200, 201), response.data


def run_source_engine(driver: NodeDriver, clock: FrozenClock) -> None:
    """Fire what comes due from 12:00:30 to 12:01:30: `once` once, `tick` and `auth` twice;
    then stop the node as production does."""
    clock.set(START + timedelta(seconds=30))
    driver.step()
    driver.step()
    clock.advance(timedelta(minutes=1))
    driver.step()
    driver.step()
    driver.stop()


def revoke_a_certificate(db: Database, subscription_id: str, clock: FrozenClock) -> None:
    """Register a second certificate to the subscription and unregister it again."""
    other = pki.issue_client_certificate(None, "former", clock.now())
    with db.transaction() as session:
        register_certificate(session, subscription_id, other.certificate, clock.now())
    with db.transaction() as session:
        delete_certificate(session, subscription_id, other.thumbprint, clock.now())


@pytest.fixture
def source(app: Flask, home: dict[str, Any], db: Database, clock: FrozenClock,
           receiver: Receiver, make_driver: MakeDriver) -> dict[str, Any]:
    """The conftest home with 3 collections of 200 jobs, some with secrets, one disabled
    through Resource Manager and tagged; history and executions of jobs that fired; a
    revoked certificate; a service principal; and an inline run waiting, with Basic
    credentials."""
    admin = admin_of(app, db, clock, home)
    fill(admin, receiver)
    run_source_engine(make_driver(), clock)
    revoke_a_certificate(db, admin.subscription_id, clock)
    admin.disable_with_tags("cs2", "jc3")
    with db.transaction() as session:
        create_principal(session, admin.subscription_id, "deployer", clock.now())
    inline = firing_jobs(receiver)["auth"]["action"]
    inline["request"]["uri"] = receiver.url("/inline")
    response = admin.call("POST", INLINE_RUNS, {"action": inline})
    assert response.status_code == 202, response.data
    return home


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """`scheduler ARGV...`: its exit code, standard output and standard error."""
    capsys.readouterr()
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def export(capsys: pytest.CaptureFixture[str], home: str, tmp_path: Path, name: str,
           *flags: str) -> Path:
    """Export a home with --history and the test's passphrase into a file."""
    code, out, err = run_cli(capsys, "export", "--home", home, "--history",
                             "--passphrase-file", str(passphrase_file(tmp_path)), *flags)
    assert code == 0, err
    path = tmp_path / name
    path.write_text(out)
    return path


def passphrase_file(tmp_path: Path, passphrase: str = PASSPHRASE) -> Path:
    """A passphrase file, ending with a line break as an editor leaves it."""
    path = tmp_path / f"pass-{abs(hash(passphrase))}.txt"
    path.write_text(passphrase + "\n")
    return path


def import_into(capsys: pytest.CaptureFixture[str], home: Path, file: Path,
                tmp_path: Path) -> str:
    """Import a file with the test's passphrase; what the command printed."""
    code, out, err = run_cli(capsys, "import", "--home", str(home), str(file),
                             "--passphrase-file", str(passphrase_file(tmp_path)))
    assert code == 0, err
    return out


def database_of(home: Path) -> Database:
    """The database a home's config names."""
    return Database(load_settings(home, env={}).database_url)


def box_of(home: Path) -> SecretBox:
    """A home's secret box."""
    settings = load_settings(home, env={})
    return SecretBox.from_file(settings.path(settings.security.secret_key_file))


def admin_thumbprint(home: Path) -> str:
    """The thumbprint of the admin certificate `init` made for a home."""
    return pki.thumbprint(pki.load_certificate((home / "admin.pem").read_bytes()))


def content(home: Path, subscriptions: set[str], imported_into: tuple[Path, ...] = ()
            ) -> dict[str, list[Any]]:
    """What a home's database holds of these subscriptions, by what names it (never a
    database key), secrets opened with the home's key; the certificates but the admin
    certificates of the homes `imported_into`, which each import registered to the
    subscription it moved."""
    box = box_of(home)
    db = database_of(home)
    admins = {admin_thumbprint(path) for path in imported_into}
    try:
        with db.snapshot() as session:
            found = _content(session, box, subscriptions)
    finally:
        db.dispose()
    found["certificates"] = [c for c in found["certificates"] if c[1] not in admins]
    return found


def _content(session: Any, box: SecretBox, subscriptions: set[str]) -> dict[str, list[Any]]:
    services = {s.id: s for s in session.scalars(select(CloudService))
                if s.subscription_id in subscriptions}
    collections = {c.id: c for c in session.scalars(select(JobCollection))
                   if c.cloud_service_id in services}
    jobs = {j.id: j for j in session.scalars(select(Job)) if j.collection_id in collections}

    def place(collection_id: int) -> tuple[str, str, str]:
        collection = collections[collection_id]
        service = services[collection.cloud_service_id]
        return service.subscription_id, service.name, collection.name

    def job_name(pk: int) -> tuple[str, ...]:
        return (*place(jobs[pk].collection_id), jobs[pk].job_id)

    def opened(stored: str | None, sealed: bytes | None) -> Any:
        """The definition and its secrets, in clear."""
        return None if stored is None else dump_definition(open_definition(stored, sealed, box))

    def fields(row: Any, *skip: str) -> dict[str, Any]:
        return {column: getattr(row, column) for column in row.__table__.columns.keys()  # noqa: SIM118 - names
                if column not in {"id", "secrets", *skip}}

    return {
        "subscriptions": sorted((s.id, s.name, s.created_at)
                                for s in session.scalars(select(Subscription))
                                if s.id in subscriptions),
        "certificates": sorted((c.subscription_id, c.thumbprint, c.der, c.not_after,
                                c.created_at)
                               for c in session.scalars(select(ManagementCertificate))
                               if c.subscription_id in subscriptions),
        "revoked": sorted((r.subscription_id, r.thumbprint, r.revoked_at)
                          for r in session.scalars(select(RevokedCertificate))
                          if r.subscription_id in subscriptions),
        "principals": sorted(repr(fields(p)) for p in session.scalars(select(ServicePrincipal))
                             if p.subscription_id in subscriptions),
        "cloud_services": sorted(repr(fields(s)) for s in services.values()),
        "collections": sorted(repr((place(c.id), fields(c, "cloud_service_id")))
                              for c in collections.values()),
        "jobs": sorted(repr((job_name(j.id), fields(j, "collection_id"),
                             opened(j.definition, j.secrets))) for j in jobs.values()),
        # Each job's entries in their order (a stable sort keeps it).
        "history": sorted(((job_name(h.job_pk), fields(h, "job_pk"))
                           for h in session.scalars(select(HistoryEntry)
                                                    .order_by(HistoryEntry.id))
                           if h.job_pk in jobs), key=lambda entry: entry[0]),
        "calendars": sorted(repr((place(c.collection_id), fields(c, "collection_id")))
                            for c in session.scalars(select(Calendar))
                            if c.collection_id in collections),
        "channels": sorted(repr((place(c.collection_id),
                                 open_channel(c.name, c.document, c.secrets, box),
                                 c.created_at, c.updated_at))
                           for c in session.scalars(select(NotificationChannel))
                           if c.collection_id in collections),
        "executions": sorted(repr((
            job_name(e.job_pk) if e.job_pk is not None else place(e.collection_id),
            fields(e, "job_pk", "collection_id", "lease_owner", "lease_until", "definition"),
            opened(e.definition, e.secrets)))
            for e in session.scalars(select(Execution)) if e.collection_id in collections),
    }


def new_home(tmp_path: Path, name: str, database_url: str | None = None) -> Path:
    """A home made by `scheduler init`, on SQLite or on the database given."""
    home = tmp_path / name
    init_home(home, ["localhost", "127.0.0.1"], env={}, database_url=database_url)
    return home


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh PostgreSQL schema."""
    with fresh_postgres_schema("move") as url:
        yield url


def engine_on(home: Path, clock: FrozenClock) -> NodeDriver:
    """An engine node of a home, stepped on the fake clock, allowed to call loopback."""
    db = database_of(home)
    options = engine_options(EngineSettings(), sqlite=db.is_sqlite)
    actions = standard_actions(HttpCaller(allow_private_networks=True))
    return NodeDriver(Engine(db, box_of(home), clock, "moved-node", actions, options), clock)


def paths(receiver: Receiver) -> list[str]:
    """The paths the receiver was called on, in order."""
    return [request.path for request in receiver.requests]


@only_sqlite_first
def test_a_home_moves_from_sqlite_to_postgresql_and_back_with_everything(
        source: dict[str, Any], tmp_path: Path, postgres_url: str, clock: FrozenClock,
        receiver: Receiver, capsys: pytest.CaptureFixture[str]) -> None:
    subscription = source["subscriptionId"]
    before = content(Path(source["home"]), {subscription})
    assert len(before["jobs"]) == 200 and len(before["collections"]) == 3
    assert before["history"] and before["revoked"] and len(before["executions"]) >= 5
    assert len(before["principals"]) == 1
    assert sum("'jobs_disabled': True" in c and '"cost-centre": "4711"' in c
               for c in before["collections"]) == 1
    assert sorted(paths(receiver)) == ["/auth", "/auth", "/once", "/tick", "/tick"]
    assert len(before["calendars"]) == 1 and len(before["channels"]) == 2
    assert sum("default_alerts': '{" in c for c in before["collections"]) == 1

    first = export(capsys, source["home"], tmp_path, "first.json")
    assert AUTH[1] not in first.read_text() and "sig=secret7" not in first.read_text()
    # The channels' secrets are sealed in the file, as jobs' are.
    assert "whsec_" not in first.read_text() and "/services/T/B/x" not in first.read_text()
    on_postgres = new_home(tmp_path, "on-postgres", postgres_url)
    said = import_into(capsys, on_postgres, first, tmp_path)
    assert f"registered to subscription {subscription}" in said
    assert "1 calendar, 2 notification channels" in said
    assert content(on_postgres, {subscription}, (on_postgres,)) == before

    second = export(capsys, str(on_postgres), tmp_path, "second.json")
    back = new_home(tmp_path, "back-on-sqlite")
    import_into(capsys, back, second, tmp_path)
    assert content(back, {subscription}, (on_postgres, back)) == before

    # The CA and server certificate are the first home's: clients keep their --ca.
    for name in ("ca.pem", "ca-key.pem", "server.pem", "server-key.pem"):
        assert (back / name).read_bytes() == (Path(source["home"]) / name).read_bytes()
    profile = (back / "client.toml").read_text()
    assert f'subscription = "{subscription}"' in profile

    # The moved home fires each occurrence once: `once` not again, `tick` and `auth` at
    # their next minute, authenticating at their target.
    node = engine_on(back, clock)
    try:
        node.step()
        # The inline run that waited in the old home runs, once, in the new one.
        assert sorted(paths(receiver)) == ["/auth", "/auth", "/inline", "/once", "/tick",
                                           "/tick"]
        clock.set(START + timedelta(minutes=2, seconds=30))
        node.step()
        node.step()
    finally:
        node.stop()
        node.close()
    assert sorted(paths(receiver)) == ["/auth"] * 3 + ["/inline", "/once"] + ["/tick"] * 3
    expected = "Basic " + base64.b64encode(":".join(AUTH).encode()).decode()
    assert {r.header("authorization") for r in receiver.requests
            if r.path in ("/auth", "/inline")} == {expected}
    db = database_of(back)
    with db.snapshot() as session:
        tick = session.scalars(select(Job).where(Job.job_id == "tick")).one()
        assert tick.execution_count == 3
    db.dispose()


@only_sqlite_first
def test_a_jobs_secret_opens_with_the_importing_homes_key_only(
        home: dict[str, Any], small_export: Path, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    target = new_home(tmp_path, "target")
    import_into(capsys, target, small_export, tmp_path)
    db = database_of(target)
    with db.snapshot() as session:
        job = session.scalars(select(Job).where(Job.job_id == "auth")).one()
        definition = open_definition(job.definition, job.secrets, box_of(target))
    db.dispose()
    assert job.secrets is not None and job.uses_authentication
    with pytest.raises(InvalidToken):
        box_of(Path(home["home"])).open(job.secrets)
    authentication = getattr(definition.action, "authentication", None)
    assert authentication is not None and authentication.password.value == AUTH[1]


# --- Resource Manager's view of a collection, and service principals ---------------------

@dataclass
class ResourceManagerExport:
    """An export of a home whose collection was disabled through Resource Manager and
    tagged, and whose subscription has a service principal."""

    file: Path
    subscription_id: str
    principal: NewPrincipal

    def collection_url(self) -> str:
        """The collection in Resource Manager's API."""
        return ARM_COLLECTION.format(subscription=self.subscription_id, service="cs1",
                                     collection="jc1")


@pytest.fixture
def resource_manager_export(home: dict[str, Any], app: Flask, db: Database, clock: FrozenClock,
                            receiver: Receiver, tmp_path: Path,
                            capsys: pytest.CaptureFixture[str]) -> ResourceManagerExport:
    """An export of a home with one collection and its job, disabled through Resource
    Manager and tagged, and a service principal."""
    admin = admin_of(app, db, clock, home)
    assert admin.call("PUT", SERVICE.format(service="cs1"), CLOUD_SERVICE_XML).status_code \
        == 202
    where = {"service": "cs1", "collection": "jc1"}
    assert admin.call("PUT", COLLECTION.format(**where), collection_xml()).status_code == 202
    assert admin.call("PUT", f"{JOBS.format(**where)}/far", far_job(1, receiver)).status_code \
        == 201
    admin.disable_with_tags("cs1", "jc1")
    with db.transaction() as session:
        principal = create_principal(session, admin.subscription_id, "deployer", clock.now())
    return ResourceManagerExport(export(capsys, home["home"], tmp_path, "arm.json"),
                                 admin.subscription_id, principal)


@only_sqlite_first
def test_a_disabled_tagged_collection_and_a_service_principal_move_with_the_home(
        resource_manager_export: ResourceManagerExport, tmp_path: Path, clock: FrozenClock,
        capsys: pytest.CaptureFixture[str]) -> None:
    moved = resource_manager_export
    target = new_home(tmp_path, "target")
    said = import_into(capsys, target, moved.file, tmp_path)
    assert "1 service principal," in said
    db = database_of(target)
    try:
        # The principal's secret gets a token from the new home, which lets it in.
        with db.transaction() as session:
            token = issue_token_for_secret(session, moved.principal.client_id,
                                           moved.principal.secret, clock.now())
        assert token is not None
        app = create_app(load_settings(target, env={}), clock, db=db, background=False)
        response = app.test_client().get(moved.collection_url(),
                                         headers={"Authorization": f"Bearer {token.text}"})
        assert response.status_code == 200, response.data
        assert response.get_json()["properties"]["state"] == "Disabled"
        assert response.get_json()["tags"] == TAGS
        with db.snapshot() as session:
            assert [job.state for job in session.scalars(select(Job))] == ["disabled"]
    finally:
        db.dispose()
    code, _, err = run_cli(capsys, "import", "--home", str(target), str(moved.file),
                           "--passphrase-file", str(passphrase_file(tmp_path)))
    assert code == 2 and f"service principal {moved.principal.client_id}" in err


def principals_in(document: dict[str, Any], subscription_id: str) -> list[dict[str, Any]]:
    """The service principals an export document carries for a subscription."""
    [subscription] = [s for s in document["subscriptions"] if s["id"] == subscription_id]
    found: list[dict[str, Any]] = subscription["service_principals"]
    return found


@only_sqlite_first
def test_a_service_principals_secret_hash_is_sealed_in_the_file(
        resource_manager_export: ResourceManagerExport) -> None:
    text = resource_manager_export.file.read_text()
    secret = resource_manager_export.principal.secret
    assert secret not in text and sha256_hex(secret) not in text
    [principal] = principals_in(json.loads(text), resource_manager_export.subscription_id)
    assert principal["client_id"] == resource_manager_export.principal.client_id
    assert principal["name"] == "deployer" and list(principal["secret_hash"]) == ["sealed"]


@only_sqlite_first
def test_a_service_principal_whose_secret_hash_is_not_a_sha256_is_refused(
        resource_manager_export: ResourceManagerExport, home: dict[str, Any], tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(capsys, "export", "--home", home["home"], "--clear-secrets")
    assert code == 0, err
    document = json.loads(out)
    [principal] = principals_in(document, resource_manager_export.subscription_id)
    assert principal["secret_hash"] == {
        "clear": sha256_hex(resource_manager_export.principal.secret)}
    principal["secret_hash"] = {"clear": "not a hash"}
    changed = tmp_path / "changed.json"
    changed.write_text(json.dumps(document))
    target = new_home(tmp_path, "target")
    before = whole(target)
    code, _, err = run_cli(capsys, "import", "--home", str(target), str(changed))
    assert code == 2 and "secret hash is not a SHA-256" in err
    assert whole(target) == before


# --- refusals ------------------------------------------------------------------------------

@pytest.fixture
def small_export(home: dict[str, Any], app: Flask, db: Database, clock: FrozenClock,
                 receiver: Receiver, tmp_path: Path,
                 capsys: pytest.CaptureFixture[str]) -> Path:
    """An export of a home with one collection and a job with a secret."""
    admin = admin_of(app, db, clock, home)
    assert admin.call("PUT", SERVICE.format(service="cs1"), CLOUD_SERVICE_XML).status_code \
        == 202
    where = {"service": "cs1", "collection": "jc1"}
    assert admin.call("PUT", COLLECTION.format(**where), collection_xml()).status_code == 202
    assert admin.call("PUT", f"{JOBS.format(**where)}/auth",
                      firing_jobs(receiver)["auth"]).status_code == 201
    return export(capsys, home["home"], tmp_path, "small.json")


def whole(home: Path) -> dict[str, Any]:
    """Every row of a home's database and every file of the home, to show nothing moved."""
    db = database_of(home)
    try:
        with db.reader() as conn:
            rows = {name: sorted((tuple(row) for row in conn.execute(
                        text(f"SELECT * FROM {name}"))), key=repr)
                    for name in inspect(conn).get_table_names()}
    finally:
        db.dispose()
    files = {path.name: path.read_bytes() for path in home.iterdir()
             if path.is_file() and not path.name.startswith("scheduler.db")}
    return {"rows": rows, "files": files}


@only_sqlite_first
def test_an_import_into_a_home_that_holds_any_of_it_is_refused_and_writes_nothing(
        small_export: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = new_home(tmp_path, "target")
    import_into(capsys, target, small_export, tmp_path)
    before = whole(target)
    code, _, err = run_cli(capsys, "import", "--home", str(target), str(small_export),
                           "--passphrase-file", str(passphrase_file(tmp_path)))
    assert code == 2
    assert "already holds subscription" in err and "Nothing was written" in err
    assert whole(target) == before


@only_sqlite_first
@pytest.mark.parametrize("passphrase", [None, "wrong horse"])
def test_an_import_without_the_right_passphrase_is_refused_and_writes_nothing(
        small_export: Path, tmp_path: Path, passphrase: str | None,
        capsys: pytest.CaptureFixture[str]) -> None:
    target = new_home(tmp_path, "target")
    before = whole(target)
    flags = [] if passphrase is None else ["--passphrase-file",
                                           str(passphrase_file(tmp_path, passphrase))]
    code, _, err = run_cli(capsys, "import", "--home", str(target), str(small_export), *flags)
    assert code == 2
    assert ("does not open" if passphrase else "--passphrase-file") in err
    assert whole(target) == before


@only_sqlite_first
@pytest.mark.parametrize("change", [{"version": 2}, {"format": "something-else"}])
def test_a_file_of_an_unknown_format_or_version_is_refused_and_writes_nothing(
        small_export: Path, tmp_path: Path, change: dict[str, Any],
        capsys: pytest.CaptureFixture[str]) -> None:
    document = json.loads(small_export.read_text())
    document.update(change)
    small_export.write_text(json.dumps(document))
    target = new_home(tmp_path, "target")
    before = whole(target)
    code, _, err = run_cli(capsys, "import", "--home", str(target), str(small_export),
                           "--passphrase-file", str(passphrase_file(tmp_path)))
    assert code == 2
    assert ("version 2" if "version" in change else "not a scheduler export") in err
    assert whole(target) == before


@only_sqlite_first
def test_a_certificate_that_is_not_the_one_its_thumbprint_names_is_refused(
        small_export: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    document = json.loads(small_export.read_text())
    document["subscriptions"][0]["certificates"][0]["thumbprint"] = "0" * 40
    small_export.write_text(json.dumps(document))
    target = new_home(tmp_path, "target")
    before = whole(target)
    code, _, err = run_cli(capsys, "import", "--home", str(target), str(small_export),
                           "--passphrase-file", str(passphrase_file(tmp_path)))
    assert code == 2 and "not the one its thumbprint names" in err
    assert whole(target) == before


@only_sqlite_first
@pytest.mark.parametrize(("member", "damaged", "words"), [
    ("calendars", {"name": "holidays", "document": {"v": 1, "dates": "soon"},
                   "created_at": "2026-03-01T12:00:00+00:00",
                   "updated_at": "2026-03-01T12:00:00+00:00"},
     "the calendar holidays does not read"),
    ("channels", {"name": "ops", "document": {"v": 1, "type": "pager"}, "secrets": None,
                  "created_at": "2026-03-01T12:00:00+00:00",
                  "updated_at": "2026-03-01T12:00:00+00:00"},
     "the stored channel ops cannot be read by this version"),
    ("default_alerts", {"v": 1, "on": ["exploded"]}, "the default alert rules do not read"),
])
def test_a_calendar_channel_or_default_rules_that_do_not_read_are_refused(
        small_export: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        member: str, damaged: Any, words: str) -> None:
    document = json.loads(small_export.read_text())
    [collection] = [c for sub in document["subscriptions"] for service in sub["cloud_services"]
                    for c in service["collections"]]
    collection[member] = damaged if member == "default_alerts" else [damaged]
    small_export.write_text(json.dumps(document))
    target = new_home(tmp_path, "target")
    before = whole(target)
    code, _, err = run_cli(capsys, "import", "--home", str(target), str(small_export),
                           "--passphrase-file", str(passphrase_file(tmp_path)))
    assert code == 2 and f"cs1/jc1: {words}" in err, err
    assert whole(target) == before


def test_an_export_without_a_passphrase_or_clear_secrets_is_refused(
        home: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(capsys, "export", "--home", home["home"])
    assert code == 2 and out == ""
    assert "--passphrase-file" in err and "--clear-secrets" in err


@only_sqlite_first
def test_an_export_while_an_engine_of_the_home_runs_is_refused_naming_it(
        home: dict[str, Any], db: Database, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    with db.transaction() as session:  # a heartbeat of now: the export reads the real clock
        Heartbeats().beat(session, "engine-busy-1", SystemClock().now())
    code, out, err = run_cli(capsys, "export", "--home", home["home"], "--passphrase-file",
                             str(passphrase_file(tmp_path)))
    assert code == 2 and out == ""
    assert "engine-busy-1" in err and "Stop every `scheduler serve`" in err


@only_sqlite_first
def test_an_export_with_clear_secrets_imports_without_a_passphrase(
        small_export: Path, home: dict[str, Any], tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(capsys, "export", "--home", home["home"], "--clear-secrets")
    assert code == 0, err
    assert AUTH[1] in out and "PRIVATE KEY" in out
    clear = tmp_path / "clear.json"
    clear.write_text(out)
    target = new_home(tmp_path, "target")
    code, _, err = run_cli(capsys, "import", "--home", str(target), str(clear))
    assert code == 0, err


# --- an export made by version 1 keeps importing -------------------------------------------

KEPT_EXPORT = Path(__file__).resolve().parent.parent / "data" / "export-v1.json"
KEPT_PASSPHRASE = "kept export of version 1"


def test_an_export_made_by_version_1_imports(tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    target = new_home(tmp_path, "target")
    code, _, err = run_cli(capsys, "import", "--home", str(target), str(KEPT_EXPORT),
                             "--passphrase-file",
                             str(passphrase_file(tmp_path, KEPT_PASSPHRASE)))
    assert code == 0, err
    document = json.loads(KEPT_EXPORT.read_text())
    subscription = document["home"]["subscription_id"]
    moved = content(target, {subscription}, (target,))
    assert len(moved["jobs"]) == 3 and moved["history"]
    assert AUTH[1] in repr(moved["jobs"])  # the job's secret opened with the target's key
    # The file was made before Resource Manager's view and service principals were moved.
    assert moved["principals"] == []
    db = database_of(target)
    with db.snapshot() as session:
        collections = list(session.scalars(select(JobCollection)))
    db.dispose()
    assert collections and all(not c.jobs_disabled and c.tags is None for c in collections)


@only_sqlite_first
def test_who_set_a_jobs_state_when_and_why_move_with_the_home_and_may_be_left_out(
        home: dict[str, Any], app: Flask, db: Database, clock: FrozenClock,
        receiver: Receiver, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    admin = admin_of(app, db, clock, home)
    assert admin.call("PUT", SERVICE.format(service="cs1"), CLOUD_SERVICE_XML).status_code \
        == 202
    where = {"service": "cs1", "collection": "jc1"}
    assert admin.call("PUT", COLLECTION.format(**where), collection_xml()).status_code == 202
    jobs = JOBS.format(**where)
    for job_id in ("noted", "plain"):
        assert admin.call("PUT", f"{jobs}/{job_id}", far_job(1, receiver)).status_code == 201
    assert admin.call("PATCH", f"{jobs}/noted",
                      {"state": "disabled", "stateNote": "vendor outage"}).status_code == 200
    file = export(capsys, home["home"], tmp_path, "noted.json")
    document = json.loads(file.read_text())
    [subscription] = [s for s in document["subscriptions"]
                      if s["id"] == admin.subscription_id]
    moved = {job["id"]: job for job in subscription["cloud_services"][0]["collections"][0]
             ["jobs"]}
    assert (moved["noted"]["state_note"], moved["noted"]["state_changed_by"]) == (
        "vendor outage", "operator")
    assert "state_note" not in moved["plain"] and "state_changed_at" not in moved["plain"]

    def stamps(target: Path) -> dict[str, tuple[Any, ...]]:
        db = database_of(target)
        try:
            with db.snapshot() as session:
                return {job.job_id: (job.state_note, job.state_changed_by,
                                     job.state_changed_at) for job in session.scalars(
                                         select(Job))}
        finally:
            db.dispose()

    target = new_home(tmp_path, "target")
    import_into(capsys, target, file, tmp_path)
    assert stamps(target) == {"noted": ("vendor outage", "operator", clock.now()),
                              "plain": (None, None, None)}
    # A file written before jobs kept these reads as one whose jobs were never stamped.
    for key in ("state_note", "state_changed_by", "state_changed_at"):
        del moved["noted"][key]
    older = tmp_path / "older.json"
    older.write_text(json.dumps(document))
    second = new_home(tmp_path, "second")
    import_into(capsys, second, older, tmp_path)
    assert stamps(second)["noted"] == (None, None, None)
