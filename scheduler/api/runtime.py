"""The request's runtime: configuration, clock, database, request id, read connection."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta

from flask import current_app, g
from sqlalchemy import Connection
from sqlalchemy.orm import Session

from scheduler.clock import Clock
from scheduler.db.session import Database
from scheduler.security import pki
from scheduler.security.secrets import SecretBox
from scheduler.services import new_request_id
from scheduler.services.calls import Call
from scheduler.services.notifications import ChannelSender
from scheduler.services.operations import OperationRunner
from scheduler.settings import Settings


@dataclass
class Runtime:
    """What the routes need: configuration, clock, database, secret box, operation runner,
    and what sends a notification channel's test message."""

    settings: Settings
    clock: Clock
    db: Database
    box: SecretBox
    operations: OperationRunner
    node_id: str
    # The service's own origin and the base of its links (`server.public_url`, or as served).
    public_url: str
    notifier: ChannelSender


def runtime() -> Runtime:
    """The runtime of the current app."""
    value: Runtime = current_app.extensions["scheduler"]
    return value


def read_connection() -> Connection:
    """This request's read-only connection, opened on first use and closed at teardown."""
    if "read_connection" not in g:
        g.read_connection = runtime().db.read_engine.connect()
    conn: Connection = g.read_connection
    return conn


def close_read_connection(_error: BaseException | None = None) -> None:
    """Give the request's read connection back to the pool."""
    conn = g.pop("read_connection", None)
    if conn is not None:
        conn.close()


@contextmanager
def transaction() -> Iterator[Session]:
    """A write transaction for this request, on its read connection if it has one (on
    PostgreSQL), or on a new one once the read connection is given back: a request never
    holds two of the pool's connections, since threads that each held one and waited for
    another could take the whole pool and wait for each other."""
    db = runtime().db
    conn = None if db.is_sqlite else g.pop("read_connection", None)
    if conn is None:
        close_read_connection()
        with db.transaction() as session:
            yield session
        return
    try:  # PostgreSQL: carry on in the transaction the request's reads began
        with db.transaction_on(conn) as session:
            yield session
    finally:
        conn.close()


@contextmanager
def snapshot() -> Iterator[Session]:
    """A read-only session for this request, after giving back its read connection."""
    close_read_connection()
    with runtime().db.snapshot() as session:
        yield session


def request_id() -> str:
    """This request's id, as sent back in `x-ms-request-id`."""
    if "request_id" not in g:
        g.request_id = new_request_id()
    value: str = g.request_id
    return value


def actor() -> str:
    """Whom the audit names for this request: the certificate's name (read from it only
    when asked: most requests write nothing), or the service principal's."""
    named: str | None = g.get("actor")
    if named is None:
        certificate = g.get("certificate")
        named = g.actor = pki.name_of_der(certificate) if certificate is not None else ""
    return named


def call() -> Call:
    """This request as the use cases see it: its id, subscription and time, the plans and
    secret box its writes follow, and the engines it wakes."""
    rt = runtime()
    engine = rt.settings.engine
    return Call(request_id=request_id(), subscription_id=g.subscription_id,
                now=rt.clock.now(), plans=rt.settings.plans, box=rt.box,
                home=rt.settings.home,
                wake_horizon=timedelta(seconds=engine.lookahead_seconds
                                       + engine.max_sleep_seconds),
                actor=actor())
