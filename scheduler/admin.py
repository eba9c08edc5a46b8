"""The server's commands: make a home (`init`), serve it, upgrade its database, add
subscriptions, certificates and service principals, rotate its keys.

`scheduler.cli` imports this module only when one of these commands runs, so that the
client's commands (`scheduler jobs ...`) never load the server stack they do not use.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import logging
import os
import re
import shutil
import signal
import sys
import tomllib
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cryptography.x509 import Certificate
from sqlalchemy import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, IntegrityError, SQLAlchemyError

from scheduler.cli import CommandError, failed
from scheduler.client.profile import home_profile, profile_text
from scheduler.client.render import as_json, fields, table
from scheduler.clock import SystemClock
from scheduler.db.schema import SchemaError, require_current_schema, upgrade_schema
from scheduler.db.session import Database
from scheduler.home import (
    CERT_FILES,
    config_text,
    load_home_ca,
    record_port,
    renew_server_certificate,
    server_certificate,
    write_atomically,
)
from scheduler.security import pki
from scheduler.security.secrets import SecretBox
from scheduler.services.certificates import register_certificate, subscriptions_of_certificate
from scheduler.services.dashboard_sessions import LINK_LIFETIME, create_link
from scheduler.services.errors import BadRequest, NotFound
from scheduler.services.export_format import (
    ClearSealer,
    ExportFormatError,
    HomeExport,
    HomeKeys,
    PassphraseSealer,
    count_of,
    read_export,
    write_export,
)
from scheduler.services.home import (
    HomeKeyMismatch,
    check_home_key,
    holds_a_home,
    record_home_key,
)
from scheduler.services.leases import Heartbeats
from scheduler.services.moving import MoveRefused, load_home, read_home, running_engines
from scheduler.services.principals import (
    NewPrincipal,
    create_principal,
    delete_principal,
    list_principals,
)
from scheduler.services.secrets import rotate_secret_keys
from scheduler.services.subscriptions import create_subscription, subscription_exists
from scheduler.settings import (
    CONFIG_FILE,
    Settings,
    SettingsError,
    load_settings,
)
from scheduler.supervise import Child, Exited, Lifeline, Supervisor
from scheduler.telemetry import configure_logging, forget_process, serve_metrics, shared_metrics

if TYPE_CHECKING:
    from flask import Flask

log = logging.getLogger(__name__)

def _write(path: Path, data: bytes, private: bool = False) -> None:
    path.write_bytes(data)
    if private:
        path.chmod(0o600)


def init_home(home: Path, host_names: list[str], env: Mapping[str, str] | None = None,
              database_url: str | None = None, certs_dir: Path | None = None,
              port: int | None = None) -> dict[str, Any]:
    """Create a home: config, database, CA, server certificate, a subscription and its admin.

    The database is `database_url`, written into the config, or else the one configured for
    the home (`SCHEDULER_DATABASE_URL` included); its schema is brought to the current
    revision first. Nothing is left written when that database cannot be reached or already
    belongs to a home, or anything else fails. With `certs_dir`, the CA, server and admin
    certificates and keys go there, named in the config. The port, `port` or else
    `SCHEDULER_SERVER_PORT` or 8443, is written into the config and the client's profile.
    """
    if home.exists() and any(home.iterdir()):
        raise CommandError(f"{home} exists and is not empty; refusing to overwrite it")
    if certs_dir is not None:
        _check_certs_dir(certs_dir)
    if database_url is not None:
        _check_database_url(database_url)
        _reachable(Database(database_url))
    if port is None:  # the home has no config yet: the environment's, or the default
        port = load_settings(home, env=env).server.port
    with _removed_on_failure(home, certs_dir):
        home.mkdir(parents=True, exist_ok=True)
        (home / CONFIG_FILE).write_text(config_text(database_url, certs_dir, port))
        settings = load_settings(home, env=env)
        settings = replace(settings, server=replace(settings.server, port=port))
        _check_configured_database_url(settings.database_url, home)
        _refuse_a_database_with_a_home(settings.database_url)
        home.chmod(0o700)
        if certs_dir is not None:
            certs_dir.mkdir(parents=True, exist_ok=True)
        return _make_home(home, settings, host_names)


def _make_home(home: Path, settings: Settings, host_names: list[str]) -> dict[str, Any]:
    """Write the keys and certificates of a home whose config is written, and make its
    schema, subscription, admin certificate and key check in its database."""
    now = SystemClock().now()
    ca = pki.create_ca("scheduler home CA", now)
    server_cert = pki.issue_server_certificate(ca, host_names, now)
    admin = pki.issue_client_certificate(ca, "scheduler admin", now)
    _write(settings.path(settings.server.ca_file), ca.cert_pem)
    _write(settings.path(settings.security.ca_key_file), ca.key_pem, private=True)
    _write(settings.path(settings.server.cert_file), server_cert.cert_pem + ca.cert_pem)
    _write(settings.path(settings.server.key_file), server_cert.key_pem, private=True)
    key_file = settings.path(settings.security.secret_key_file)
    _write(key_file, SecretBox.new_key(), private=True)
    _write(settings.path(settings.security.admin_cert_file), admin.bundle_pem, private=True)
    db = Database(settings.database_url)
    try:
        upgrade_schema(db)
        with db.transaction() as session:
            subscription_id = create_subscription(session, "default", now)
            register_certificate(session, subscription_id, admin.certificate, now)
            record_home_key(session, SecretBox.from_file(key_file))
    except IntegrityError:  # another `init` on the same database got there first
        raise CommandError(_database_has_a_home(db.url_for_people)) from None
    finally:
        db.dispose()
    url = f"https://{settings.server.host}:{settings.server.port}"
    # What `scheduler jobs ...` and `scheduler collections ...` read when given no flags.
    home_profile(settings.home).write_text(profile_text(
        url, subscription_id, settings.path(settings.security.admin_cert_file),
        settings.path(settings.server.ca_file)))
    return {
        "subscriptionId": subscription_id,
        "url": url,
        "caCert": str(settings.path(settings.server.ca_file)),
        "clientCert": str(settings.path(settings.security.admin_cert_file)),
        "home": str(home),
    }


@contextlib.contextmanager
def _removed_on_failure(home: Path, certs_dir: Path | None) -> Iterator[None]:
    """Take away what `init` made if it fails: the home (or, if it was there already, empty,
    what was put in it), and the certificates and keys written to `certs_dir` (and the
    directory, if `init` made it)."""
    home_was_there = home.exists()
    certs_dir_was_there = certs_dir is not None and certs_dir.exists()
    try:
        yield
    except BaseException:
        if not home_was_there:
            shutil.rmtree(home, ignore_errors=True)
        elif home.is_dir():  # it was empty: `init` checked
            for child in home.iterdir():
                if child.is_dir():
                    shutil.rmtree(child)
                else:
                    child.unlink()
        if certs_dir is not None:
            for name in CERT_FILES:  # `_check_certs_dir` saw none of them there
                (certs_dir / name).unlink(missing_ok=True)
            if not certs_dir_was_there and certs_dir.exists():
                certs_dir.rmdir()
        raise


def _refuse_a_database_with_a_home(url: str) -> None:
    """Refuse a database another home's subscriptions and keys are in: its nodes could not
    open the secrets a second home would seal, nor this one theirs. Only reads it."""
    db = Database(url)
    try:
        if holds_a_home(db):
            raise CommandError(_database_has_a_home(db.url_for_people))
    finally:
        db.dispose()


def _database_has_a_home(where: str) -> str:
    """What `init` says of a database that already belongs to a home."""
    return (f"the database {where} already belongs to a home: another `scheduler init` made "
            "its subscription, CA and secret key there, and a second home on it would have "
            "keys the first one's nodes cannot use. To add a node to that home, copy its home "
            "directory to the new node and run `scheduler serve --home DIR` there (see "
            "\"Several nodes\" in docs/operations.md); for a new home, give `--database-url` a "
            "database of its own. Nothing was written")


def _check_certs_dir(certs_dir: Path) -> None:
    """Refuse to overwrite certificates a previous `init` left in the directory."""
    present = [name for name in CERT_FILES if (certs_dir / name).exists()]
    if present:
        raise CommandError(f"{certs_dir} already holds {', '.join(present)}: they belong to "
                           "another home; remove them to make new ones")


def _check_database_url(url: str) -> None:
    """Refuse a URL that names neither SQLite nor PostgreSQL, before anything is written."""
    problem = database_url_problem(url)
    if problem is not None:
        raise CommandError(f"--database-url: {problem}")


def _check_configured_database_url(url: str, home: Path) -> None:
    """Refuse a home's `database.url` that cannot be used, before anything opens it."""
    problem = database_url_problem(url)
    if problem is not None:
        raise CommandError(f"database.url (in {home / CONFIG_FILE}, or "
                           f"SCHEDULER_DATABASE_URL): {problem}")


def database_url_problem(url: str) -> str | None:
    """Why a database URL cannot be used: not a URL, neither SQLite nor PostgreSQL, or a
    driver that is not installed; None if it can."""
    try:
        parsed = make_url(url)
        dialect = parsed.get_backend_name()
    except ArgumentError as exc:
        return f"{url!r} is not a database URL: {exc}"
    supported = "use postgresql+psycopg://USER@HOST:PORT/DB or sqlite:///FILE"
    if dialect not in ("sqlite", "postgresql"):
        return f"{dialect} is not supported; {supported}"
    try:
        parsed.get_dialect().import_dbapi()
    except ImportError as exc:
        return (f"the driver of {parsed.drivername}:// is not installed (no module "
                f"{exc.name}); {supported}")
    except ArgumentError:  # a driver name SQLAlchemy does not know
        return f"{parsed.drivername}:// names no driver; {supported}"
    return None


def _reachable(db: Database) -> None:
    """Connect once, so that an unreachable database is named before anything is made."""
    try:
        with db.engine.connect():
            pass
    finally:
        db.dispose()


def _settings(home: str) -> Settings:
    path = Path(home)
    if not (path / CONFIG_FILE).exists():
        raise CommandError(f"{path} is not a scheduler home; run `scheduler init --home {home}`")
    settings = load_settings(path)
    _check_configured_database_url(settings.database_url, path)
    return settings


def cmd_init(args: argparse.Namespace) -> int:
    """`scheduler init`."""
    certs_dir = Path(args.certs_dir) if args.certs_dir else None
    names = server_names(args.host_name)
    result = init_home(Path(args.home).resolve(), names, database_url=args.database_url,
                       certs_dir=certs_dir, port=args.port)
    if args.json:
        print(json.dumps(result))
    else:
        print(f"Created {result['home']}\n  subscription {result['subscriptionId']}\n"
              f"  admin certificate {result['clientCert']}\n  CA {result['caCert']}\n"
              f"  server certificate for {', '.join(names)}\n"
              f"  client profile {home_profile(Path(result['home']))}, for {result['url']}\n"
              f"Start it with: scheduler serve --home {args.home}\n"
              f"Then, for example: scheduler collections list --home {args.home}")
    return 0


def server_names(host_names: list[str] | None) -> list[str]:
    """The names a server certificate is made for: those given with `--host-name`, each
    checked, and the local ones."""
    for name in host_names or []:
        problem = pki.host_name_problem(name)
        if problem is not None:
            raise CommandError(f"--host-name {name!r}: {problem}")
    return pki.server_host_names(host_names or [])


def tune_garbage_collection() -> None:
    """Look for reference cycles less often, and never among what start-up loaded.

    A serving process makes many short-lived objects per request or call; with Python's
    default thresholds the cycle collector runs every 700 allocations and its full passes
    walk everything alive (thousands of calls in flight, every loaded module), which measured
    as a third of the engine's CPU. Forked workers inherit both settings.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)


def cmd_serve(args: argparse.Namespace) -> int:
    """`scheduler serve`."""
    # A part of `--role all` watches its serve from the start: it ends when that is gone.
    lifeline = None if args.lifeline is None else _watch_lifeline(args.lifeline, args.role)
    settings = _settings(args.home)
    configure_logging(args.log_format or settings.logging.format, settings.logging.level)
    check_database_serves_home(settings, args.home)
    tune_garbage_collection()
    if lifeline is not None:  # its serve serves the metrics
        _serve_part_of_all(settings, args, lifeline)
        return 0
    with shared_metrics(settings.metrics) as directory:
        if directory is not None:
            serve_metrics(settings.metrics)
        if args.role == "engine":
            _serve_engine(settings)
        elif args.role == "api":
            _serve_api(settings, args)
        else:
            return _serve_all(settings, args)
    return 0


def _serve_engine(settings: Settings, node_id: str | None = None,
                  on_ready: Callable[[], None] | None = None) -> None:
    from scheduler.engine.runner import run_engine

    if on_ready is None:
        run_engine(settings, f"scheduler ready: engine (pid {os.getpid()})", sys.stdout)
        return
    # A part of `--role all`, whose one ready line is the API's: this one is a log line.
    run_engine(settings, f"engine of serve {os.getppid()} ready (pid {os.getpid()})",
               sys.stderr, node_id, on_ready)


def _serve_api(settings: Settings, args: argparse.Namespace, role: str = "api",
               serve_pid: int | None = None, on_ready: Callable[[], None] | None = None
               ) -> None:
    """The HTTPS API; in `--role all`, with `args.own_engine` naming its engine's nodes."""
    from scheduler.api.engines import expect_own_engine
    from scheduler.api.server import serve
    from scheduler.app import count_refused_certificate, create_app, stop_background

    settings, host, port = _as_served(settings, args)
    warn_if_server_certificate_expires(settings)

    def make_app() -> Flask:
        app = create_app(settings)
        return expect_own_engine(app, args.own_engine) if args.own_engine else app

    def ready() -> None:  # listening: the port is this serve's, and the client may use it
        say_port_recorded(settings, port, host)
        if on_ready is not None:
            on_ready()

    serve(settings, make_app, host, port,
          f"scheduler ready: https://{host}:{port} (role {role}, pid {serve_pid or os.getpid()})",
          on_exit=stop_background, on_worker_gone=forget_process,
          on_certificate_refused=count_refused_certificate, on_ready=ready)


# A server certificate this close to its end is warned of when serve starts.
EXPIRY_WARNING_DAYS = 30


def warn_if_server_certificate_expires(settings: Settings) -> None:
    """Log a warning when the server certificate has ended or ends within 30 days."""
    current = server_certificate(settings)
    now = SystemClock().now()
    if current.expires_within(EXPIRY_WARNING_DAYS, now):
        log.warning("the server certificate %s %s on %s: renew it with `scheduler cert server "
                    "--home %s`", current.path, "ended" if current.expires <= now else "ends",
                    f"{current.expires:%Y-%m-%d %H:%M} UTC", settings.home)


def say_port_recorded(settings: Settings, port: int, host: str) -> None:
    """Record the port this serve listens on in the home, when it says another, and say so
    on standard error in one line; a home that cannot be written is said too, not fatal."""
    try:
        record = record_port(settings, port, host)
    except (OSError, ValueError) as exc:
        print(f"scheduler: serving on port {port}, but could not record it in the home "
              f"{settings.home}: {exc}", file=sys.stderr, flush=True)
        return
    if record.changed:
        said = "" if record.before in (None, port) else f", not {record.before} as the home said"
        print(f"scheduler: serving on port {port}{said}: recorded it in "
              f"{' and '.join(str(path) for path in record.changed)}", file=sys.stderr,
              flush=True)


def _as_served(settings: Settings, args: argparse.Namespace) -> tuple[Settings, str, int]:
    """The settings with the host and port to serve on (`--host`, `--port`), which the
    default public URL is made of; one that cannot be made is refused before anything
    starts."""
    from scheduler.api.origin import public_url

    host = args.host or settings.server.host
    port = args.port or settings.server.port
    settings = replace(settings, server=replace(settings.server, host=host, port=port))
    public_url(settings)
    return settings, host, port


def _serve_all(settings: Settings, args: argparse.Namespace) -> int:
    """`--role all`: the API and the engine, each in a process of its own (the API's
    workers never fire jobs), restarted when it dies and ended when this one ends."""
    _, host, port = _as_served(settings, args)
    # This serve's engine nodes are named `engine-<serve>-<start>`, which tells its API
    # whether its own engine runs.
    own_engine = f"engine-{uuid.uuid4().hex[:8]}-"
    serve = [sys.executable, "-m", "scheduler.cli", "serve", "--home", args.home]
    if args.log_format:
        serve += ["--log-format", args.log_format]

    def api(_start: int, lifeline: int) -> list[str]:
        return [*serve, "--role", "api", "--host", host, "--port", str(port),
                "--own-engine", own_engine, "--lifeline", str(lifeline)]

    def engine(start: int, lifeline: int) -> list[str]:
        return [*serve, "--role", "engine", "--node-id", f"{own_engine}{start}",
                "--lifeline", str(lifeline)]

    def engine_gone(exited: Exited) -> None:
        forget_process(exited.pid)
        if exited.returncode != 0:  # it could not take its heartbeat away itself
            forget_engine_node(settings, f"{own_engine}{exited.start}")

    return Supervisor([Child("engine", engine, engine_gone),
                       Child("api", api, lambda exited: forget_process(exited.pid))]).run()


def _watch_lifeline(fd: int, role: str) -> Lifeline:
    """Stop this part of `--role all` once its serve is gone: the engine cleanly, as on
    SIGTERM; the API at once (SIGQUIT), its clients' requests failing over elsewhere."""
    lifeline = Lifeline(fd, signal.SIGTERM if role == "engine" else signal.SIGQUIT)
    lifeline.watch()
    return lifeline


def _serve_part_of_all(settings: Settings, args: argparse.Namespace, lifeline: Lifeline
                       ) -> None:
    """The engine or the API of a `serve --role all`, which it tells when it is ready."""
    if args.role == "engine":
        _serve_engine(settings, args.node_id, lifeline.ready)
    else:
        _serve_api(settings, args, "all", os.getppid(), lifeline.ready)


def forget_engine_node(settings: Settings, node_id: str) -> None:
    """Take away the heartbeat of an engine node that died, so that `/readyz` says at once
    that it is gone and the next engine to start takes over what it held."""
    db = Database(settings.database_url, pool_size=1, max_overflow=0)
    try:
        with db.transaction() as session:
            Heartbeats().forget(session, [node_id])
    except SQLAlchemyError as exc:  # its heartbeat ages out all the same
        log.warning("could not take away the heartbeat of engine node %s: %s", node_id,
                    type(exc).__name__)
    finally:
        db.dispose()


def check_database_serves_home(settings: Settings, home: str) -> None:
    """Refuse to serve a database without the current schema, one that knows nothing of this
    home (its admin certificate registered to no subscription: the home was made on another
    database), or one whose secrets this home's key file cannot open (another home's key
    check), naming what fixes it. Nothing is claimed before: every role checks at start."""
    db = Database(settings.database_url)
    try:
        require_current_schema(db, f"scheduler db upgrade --home {home}")
        admin = settings.path(settings.security.admin_cert_file)
        if admin.exists() and not _registered(db, pki.load_certificate(admin.read_bytes())):
            raise CommandError(_unregistered_admin(db, admin, home))
        require_home_key(db, settings.path(settings.security.secret_key_file))
    finally:
        db.dispose()


def _unregistered_admin(db: Database, admin: Path, home: str) -> str:
    """What `serve` says of a database that holds no subscription for the admin
    certificate: register it, or make a home on the database if it holds none yet."""
    fix = (f"Register it with `scheduler subscription create --home {home} --name NAME "
           f"--cert {admin}`")
    if not holds_a_home(db):
        fix += ", or make a home on this database with `scheduler init --home NEW_DIR " \
               "--database-url URL`"
    return (f"the database {db.url_for_people} holds no subscription for this home's admin "
            f"certificate ({admin}): the home was initialised on another database. {fix}")


def require_home_key(db: Database, key_file: Path) -> None:
    """Refuse a key file that opens nothing the database's home sealed (its key check); on
    a database made before the check existed, the first node to start records its own."""
    try:
        check_home_key(db, SecretBox.from_file(key_file))
    except HomeKeyMismatch:
        raise CommandError(
            f"the secret key file {key_file} does not match the database "
            f"{db.url_for_people}: its keys do not open the key check of the home the "
            "database belongs to, so this node could open none of its job secrets. Copy "
            "`secret.key` from a node of that home (every node is a copy of the one home "
            "`scheduler init` made, and after `scheduler secrets rotate` every node needs the "
            "new file), or point `database.url` at this home's own database") from None


def _registered(db: Database, certificate: Certificate) -> bool:
    """Whether the certificate is registered to a subscription in this database."""
    with db.snapshot() as session:
        return bool(subscriptions_of_certificate(session, pki.thumbprint(certificate)))


def cmd_db_upgrade(args: argparse.Namespace) -> int:
    """`scheduler db upgrade`."""
    settings = _settings(args.home)
    db = Database(settings.database_url)
    try:
        before, after = upgrade_schema(db)
    finally:
        db.dispose()
    if before == after:
        print(f"{db.url_for_people}: schema already at revision {after}")
    else:
        print(f"{db.url_for_people}: schema upgraded from revision {before or 'none'} to {after}")
    return 0


def cmd_subscription_create(args: argparse.Namespace) -> int:
    """`scheduler subscription create`."""
    settings = _settings(args.home)
    certificate = None
    if args.cert:
        certificate = pki.load_certificate(Path(args.cert).read_bytes())
    db = Database(settings.database_url)
    require_current_schema(db, f"scheduler db upgrade --home {args.home}")
    now = SystemClock().now()
    with db.transaction() as session:
        subscription_id = create_subscription(session, args.name, now)
        if certificate is not None:
            register_certificate(session, subscription_id, certificate, now)
    print(subscription_id)
    return 0


def cmd_cert_issue(args: argparse.Namespace) -> int:
    """`scheduler cert issue`: nothing is written unless the certificate can be used, and,
    with `--subscription`, registered."""
    settings = _settings(args.home)
    now = SystemClock().now()
    problem = pki.validity_days_problem(args.days, now)
    if problem is not None:
        raise CommandError(f"--days {args.days}: {problem}")
    issued = pki.issue_client_certificate(load_home_ca(settings), args.name, now,
                                          days=args.days)
    out = Path(args.out)
    if not args.subscription:
        _write(out, issued.bundle_pem, private=True)
        print(issued.thumbprint)
        return 0
    db = Database(settings.database_url)
    require_current_schema(db, f"scheduler db upgrade --home {args.home}")
    with db.transaction() as session:
        if not subscription_exists(session, args.subscription):
            raise CommandError(f"no subscription {args.subscription}")
        register_certificate(session, args.subscription, issued.certificate, now)
        # Inside the transaction: a file that cannot be written leaves nothing registered.
        _write(out, issued.bundle_pem, private=True)
    print(issued.thumbprint)
    return 0


def cmd_cert_server(args: argparse.Namespace) -> int:
    """`scheduler cert server`: a new server certificate from the home CA, for the names
    given or else the current one's; with `--if-expiring-within DAYS`, only when the
    current one ends within that many days."""
    settings = _settings(args.home)
    now = SystemClock().now()
    problem = pki.validity_days_problem(args.days, now)
    if problem is not None:
        raise CommandError(f"--days {args.days}: {problem}")
    names = server_names(args.host_name) if args.host_name else None
    current = server_certificate(settings)
    if args.if_expiring_within is not None:
        if args.if_expiring_within < 0:
            raise CommandError(f"--if-expiring-within {args.if_expiring_within}: give 0 "
                               "days or more")
        if not current.expires_within(args.if_expiring_within, now):
            days = args.if_expiring_within
            print(f"{current.path} is valid until {current.expires:%Y-%m-%d %H:%M} UTC, more "
                  f"than {days} day{'' if days == 1 else 's'} from now: nothing to do")
            return 0
    names = names or pki.server_host_names(pki.alternative_names(current.certificate))
    issued = renew_server_certificate(settings, names, now, args.days)
    print(f"{current.path}: a new server certificate\n"
          f"  names {', '.join(pki.alternative_names(issued.certificate))}\n"
          f"  valid until {issued.certificate.not_valid_after_utc:%Y-%m-%d %H:%M} UTC\n"
          f"  thumbprint {issued.thumbprint}\n"
          "A running serve takes it up for new connections within a second.")
    return 0


@contextlib.contextmanager
def current_database(settings: Settings, home: str) -> Iterator[Database]:
    """The home's database, refused unless its schema is this code's; closed afterwards."""
    db = Database(settings.database_url)
    try:
        require_current_schema(db, f"scheduler db upgrade --home {home}")
        yield db
    finally:
        db.dispose()


def principals_subscription(settings: Settings, given: str | None) -> str:
    """The subscription a `principals` command works on: `--subscription`, or else the one
    the home's client profile names (the admin's)."""
    subscription = given or profile_subscription(settings)
    if not subscription:
        raise CommandError(f"give --subscription ID: the home's client profile "
                           f"{home_profile(settings.home)} names no subscription")
    return subscription


def require_subscription(db: Database, subscription: str) -> None:
    """Refuse a subscription the database does not hold."""
    with db.snapshot() as session:
        if not subscription_exists(session, subscription):
            raise CommandError(f"no subscription {subscription}")


def authority_url(settings: Settings) -> str | None:
    """The URL token clients give as their authority: the service's public URL, or
    https://HOST:PORT as served; None when it cannot be told."""
    from scheduler.api.origin import public_url

    try:
        return public_url(settings)
    except SettingsError:
        return None


def utc_text(moment: datetime) -> str:
    """A time as the API writes it: ISO 8601 in UTC, to the second."""
    return f"{moment:%Y-%m-%dT%H:%M:%SZ}"


def cmd_principals_create(args: argparse.Namespace) -> int:
    """`scheduler principals create`: a new client id and secret for the subscription; the
    secret is printed this once and only its hash is kept."""
    settings = _settings(args.home)
    subscription = principals_subscription(settings, args.subscription)
    with current_database(settings, args.home) as db:
        try:
            with db.transaction() as session:
                made = create_principal(session, subscription, args.name, SystemClock().now())
        except BadRequest as exc:
            raise CommandError(f"--name: {exc.message}") from None
        except NotFound:
            raise CommandError(f"no subscription {subscription}") from None
    authority = authority_url(settings)
    if args.output == "json":
        print(as_json({"clientId": made.client_id, "clientSecret": made.secret,
                       "name": made.name, "subscriptionId": made.subscription_id,
                       "authority": authority, "created": utc_text(made.created_at)}))
    else:
        print(principal_created_text(made, authority, settings.path(settings.server.ca_file)))
    return 0


def principal_created_text(made: NewPrincipal, authority: str | None, ca: Path) -> str:
    """What `principals create` prints for people: the credentials, and how to use them."""
    shown = authority or "https://HOST:PORT"
    lines = [
        f"Created service principal {made.client_id} in subscription {made.subscription_id}",
        fields([("name", made.name), ("client id", made.client_id),
                ("client secret", made.secret), ("tenant", made.subscription_id),
                ("authority", shown)]),
        "The client secret is not shown again: only its hash is kept. Store it now.",
        "With azure-identity:",
        f'  ClientSecretCredential("{made.subscription_id}", "{made.client_id}", SECRET,',
        f'      authority="{shown}", disable_instance_discovery=True,',
        f'      connection_verify="{ca}")',
    ]
    if authority is None:
        lines.append("HOST:PORT is the address clients reach this service by "
                     "(server.public_url is not set and the server certificate names no host)")
    return "\n".join(lines)


def cmd_principals_list(args: argparse.Namespace) -> int:
    """`scheduler principals list`: the subscription's service principals, never their
    secrets."""
    settings = _settings(args.home)
    subscription = principals_subscription(settings, args.subscription)
    with current_database(settings, args.home) as db:
        require_subscription(db, subscription)
        with db.snapshot() as session:
            found = [{"clientId": p.client_id, "name": p.name,
                      "subscriptionId": p.subscription_id, "created": utc_text(p.created_at)}
                     for p in list_principals(session, subscription)]
    if args.output == "json":
        print(as_json(found))
    else:
        print(table(("CLIENT ID", "NAME", "CREATED"),
                    [(p["clientId"], p["name"], p["created"]) for p in found]))
    return 0


def cmd_principals_delete(args: argparse.Namespace) -> int:
    """`scheduler principals delete`: the service principal and every token issued to it,
    which stop working at once; 1 if the subscription has no such principal."""
    try:
        client_id = str(uuid.UUID(args.client_id))
    except ValueError:
        raise CommandError(f"{args.client_id!r} is not a client id (a UUID such as "
                           "`principals list` shows)") from None
    settings = _settings(args.home)
    subscription = principals_subscription(settings, args.subscription)
    with current_database(settings, args.home) as db:
        require_subscription(db, subscription)
        try:
            with db.transaction() as session:
                delete_principal(session, subscription, client_id)
        except NotFound:
            return failed(f"the subscription {subscription} has no service principal "
                          f"{client_id}", 1)
    print(f"Deleted service principal {client_id}: its tokens no longer work")
    return 0


def cmd_secrets_rotate(args: argparse.Namespace) -> int:
    """`scheduler secrets rotate`."""
    settings = _settings(args.home)
    key_file = settings.path(settings.security.secret_key_file)
    db = Database(settings.database_url)
    try:
        require_current_schema(db, f"scheduler db upgrade --home {args.home}")
        require_home_key(db, key_file)
        done = rotate_secret_keys(db, key_file)
    finally:
        db.dispose()
    print(f"{key_file}: new key in use; re-encrypted {done.jobs} job secrets, "
          f"{done.executions} execution secrets and {done.channels} notification channel "
          f"secrets; dropped {done.keys_dropped} old keys")
    if done.unreadable:
        print(f"scheduler: {done.unreadable} stored secrets open with no key of {key_file}; "
              "left as they were", file=sys.stderr)
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    """`scheduler export`: the home as one file on standard output."""
    if not args.passphrase_file and not args.clear_secrets:
        raise CommandError(
            "an export holds the job secrets and the keys of the home's CA and server: give "
            "--passphrase-file FILE to seal them with the passphrase in FILE (give the same "
            "file to `scheduler import`), or --clear-secrets to write them in clear. Nothing "
            "was written")
    sealer = PassphraseSealer.new(read_passphrase(args.passphrase_file)) \
        if args.passphrase_file else ClearSealer()
    settings = _settings(args.home)
    db = Database(settings.database_url)
    try:
        box = home_box(db, settings, args.home)
        now = SystemClock().now()
        refuse_running_engines(db, settings, now, args.home)
        admin = admin_certificate(settings)
        export = read_home(db, box, home_keys(settings), profile_subscription(settings),
                           None if admin is None else pki.thumbprint(admin), now, args.history)
    except MoveRefused as exc:
        raise CommandError(f"{exc}. Nothing was written") from None
    finally:
        db.dispose()
    sys.stdout.write(write_export(export, sealer))
    sys.stdout.flush()
    print(f"scheduler: exported {said_counts(export)} of {db.url_for_people}"
          f"{'' if args.passphrase_file else ', secrets in clear'}", file=sys.stderr)
    return 0


def read_passphrase(path: str) -> str:
    """The passphrase a file holds: its text, without the line break that ends it."""
    passphrase = Path(path).read_text().rstrip("\r\n")
    if not passphrase:
        raise CommandError(f"--passphrase-file {path}: the file holds no passphrase")
    return passphrase


def refuse_running_engines(db: Database, settings: Settings, now: datetime, home: str
                           ) -> None:
    """Refuse to export a home one of whose engines runs: what it fires after the export
    would fire again after the import."""
    running = running_engines(db, now, settings.engine.dead_after_seconds)
    if running:
        nodes = ", ".join(f"{engine.node_id} (last heartbeat "
                          f"{engine.heartbeat_at:%Y-%m-%d %H:%M:%S} UTC)" for engine in running)
        raise MoveRefused(
            f"an engine of the home {home} is running: {nodes}. Stop every `scheduler serve` "
            f"of the home (SIGTERM; on the node it names, or `--role engine`/`all` on each "
            "node), so that nothing fires both before and after the move; an engine that was "
            f"killed counts as stopped {settings.engine.dead_after_seconds:g} seconds after "
            "its last heartbeat")


def home_keys(settings: Settings) -> HomeKeys:
    """The home's CA and server certificate, with their keys, from its files."""
    return HomeKeys(
        ca_certificate=settings.path(settings.server.ca_file).read_bytes(),
        ca_key=settings.path(settings.security.ca_key_file).read_bytes(),
        server_certificate=settings.path(settings.server.cert_file).read_bytes(),
        server_key=settings.path(settings.server.key_file).read_bytes())


def home_box(db: Database, settings: Settings, home: str) -> SecretBox:
    """The home's secret box, once the database is found to have the current schema and
    to belong to the home (its key check opens with the home's key file)."""
    require_current_schema(db, f"scheduler db upgrade --home {home}")
    key_file = settings.path(settings.security.secret_key_file)
    require_home_key(db, key_file)
    return SecretBox.from_file(key_file)


def admin_certificate(settings: Settings) -> Certificate | None:
    """The home's admin certificate; None if the home has none."""
    admin = settings.path(settings.security.admin_cert_file)
    return pki.load_certificate(admin.read_bytes()) if admin.exists() else None


def profile_subscription(settings: Settings) -> str | None:
    """The subscription the home's client profile names; None without one."""
    profile = home_profile(settings.home)
    try:
        named = tomllib.loads(profile.read_text()).get("subscription")
    except (OSError, tomllib.TOMLDecodeError):
        return None
    return named if isinstance(named, str) else None


def said_counts(export: HomeExport) -> str:
    """`2 subscriptions, 1 certificate, ...`: what a file carries, in words."""
    said = []
    for what, count in count_of(export).items():
        singular = what.removesuffix("s").replace("entrie", "entry") if count == 1 else what
        said.append(f"{count} {singular}")
    return ", ".join(said)


def cmd_import(args: argparse.Namespace) -> int:
    """`scheduler import`: what an export file carries, into this home's database, and the
    exported home's CA and server certificate into its files."""
    text = sys.stdin.read() if args.file == "-" else Path(args.file).read_text()
    passphrase = read_passphrase(args.passphrase_file) if args.passphrase_file else None
    try:
        export = read_export(text, passphrase)
    except ExportFormatError as exc:
        raise CommandError(f"{args.file}: {exc}. Nothing was written") from None
    settings = _settings(args.home)
    db = Database(settings.database_url)
    try:
        box = home_box(db, settings, args.home)
        with replaced_on_commit(key_files(settings, export.keys)) as write_files:
            subscription = load_home(db, box, export, SystemClock().now(),
                                     admin_certificate(settings), write_files)
    except MoveRefused as exc:
        raise CommandError(str(exc)) from None
    finally:
        db.dispose()
    print(f"Imported {said_counts(export)} (exported "
          f"{export.exported_at:%Y-%m-%d %H:%M:%S} UTC) into {db.url_for_people}\n"
          f"  the CA and server certificate are the exported home's: clients keep their --ca")
    if subscription is not None:
        print(f"  this home's admin certificate is registered to subscription {subscription}")
        print(f"  {point_profile_at(settings, subscription)}")
    print(f"Start it with: scheduler serve --home {args.home}")
    return 0


def key_files(settings: Settings, keys: HomeKeys) -> dict[Path, tuple[bytes, int]]:
    """The files of the home's CA and server certificate, each with what an import writes
    there and its mode."""
    return {
        settings.path(settings.security.ca_key_file): (keys.ca_key, 0o600),
        settings.path(settings.server.ca_file): (keys.ca_certificate, 0o644),
        settings.path(settings.server.key_file): (keys.server_key, 0o600),
        settings.path(settings.server.cert_file): (keys.server_certificate, 0o644),
    }


@contextlib.contextmanager
def replaced_on_commit(files: dict[Path, tuple[bytes, int]]
                       ) -> Iterator[Callable[[], None]]:
    """What writes the files (each at once, the key before its certificate); if the block
    fails once they were written, they get back what they held."""
    before = {path: (path.read_bytes(), path.stat().st_mode & 0o777)
              for path in files if path.exists()}
    written: list[Path] = []

    def write() -> None:
        for path, (data, mode) in files.items():
            write_atomically(path, data, before.get(path, (b"", mode))[1])
            written.append(path)

    try:
        yield write
    except BaseException:
        for path in reversed(written):
            if path in before:
                write_atomically(path, *before[path])
            else:
                path.unlink(missing_ok=True)
        raise


SUBSCRIPTION_LINE = re.compile(r"""(?m)^(\s*subscription\s*=\s*)("(?:[^"\\]|\\.)*"|'[^']*')""")


def point_profile_at(settings: Settings, subscription: str) -> str:
    """Make the home's client profile name `subscription`; what was done, in words."""
    profile = home_profile(settings.home)
    if not profile.exists():
        return f"(no client profile {profile} to point at it)"
    text = profile.read_text()
    edited = SUBSCRIPTION_LINE.sub(lambda found: found.group(1) + json.dumps(subscription),
                                   text, count=1)
    try:
        readable = tomllib.loads(edited).get("subscription") == subscription
    except tomllib.TOMLDecodeError:
        readable = False
    if not readable:
        return f"set subscription = {json.dumps(subscription)} in {profile} by hand"
    write_atomically(profile, edited.encode(), profile.stat().st_mode & 0o777)
    return f"the client profile {profile} names it"


def cmd_dashboard_link(args: argparse.Namespace) -> int:
    """`scheduler dashboard link`: a one-time URL that opens a dashboard session for a
    certificate registered to the subscription (the admin's by default)."""
    from scheduler.api.dashboard_paths import sign_in_link_path

    settings = _settings(args.home)
    subscription = principals_subscription(settings, args.subscription)
    thumbprint = args.certificate or admin_thumbprint(settings)
    now = SystemClock().now()
    with current_database(settings, args.home) as db:
        try:
            with db.transaction() as session:
                token = create_link(session, subscription, thumbprint, now)
        except NotFound as exc:
            raise CommandError(exc.message) from None
    url = (authority_url(settings) or "https://HOST:PORT") + sign_in_link_path(token)
    expires = now + LINK_LIFETIME
    if args.output == "json":
        print(as_json({"url": url, "subscriptionId": subscription, "thumbprint": thumbprint,
                       "expires": utc_text(expires)}))
    else:
        print(f"{url}\n\nOpen it in a browser within 10 minutes (until {utc_text(expires)}); "
              "it works once, and the session it opens sees subscription "
              f"{subscription} as certificate {thumbprint}.")
    return 0


def admin_thumbprint(settings: Settings) -> str:
    """The thumbprint of the home's admin certificate."""
    path = settings.path(settings.security.admin_cert_file)
    try:
        return pki.thumbprint(pki.load_certificate(path.read_bytes()))
    except (OSError, ValueError) as exc:
        raise CommandError(f"give --certificate THUMBPRINT: the admin certificate {path} "
                           f"cannot be read ({exc})") from None


# The commands `scheduler.cli` runs by name.
COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "init": cmd_init,
    "serve": cmd_serve,
    "db upgrade": cmd_db_upgrade,
    "subscription create": cmd_subscription_create,
    "cert issue": cmd_cert_issue,
    "cert server": cmd_cert_server,
    "principals create": cmd_principals_create,
    "principals list": cmd_principals_list,
    "principals delete": cmd_principals_delete,
    "dashboard link": cmd_dashboard_link,
    "secrets rotate": cmd_secrets_rotate,
    "export": cmd_export,
    "import": cmd_import,
}


def run_command(name: str, args: argparse.Namespace) -> int:
    """Run one of the server's commands; a database it cannot use, or whose schema is not
    this code's, is a CommandError naming the problem."""
    try:
        return COMMANDS[name](args)
    except SchemaError as exc:
        raise CommandError(str(exc)) from None
    except DBAPIError as exc:
        raise CommandError(f"the database cannot be used: {database_problem(exc)}") from None


def database_problem(exc: DBAPIError) -> str:
    """The driver's own words, first line only, without SQLAlchemy's statement dump."""
    return str(exc.orig).strip().splitlines()[0] if exc.orig is not None else str(exc)
