"""The application factory: wires settings, clock, database, API and background work."""

from __future__ import annotations

import functools
import uuid

from flask import Flask

from scheduler import api, errors, ui
from scheduler.api.access import RequestMetrics
from scheduler.api.jobs import check_enabling
from scheduler.api.origin import public_url
from scheduler.api.runtime import Runtime
from scheduler.api.wsgi import AzureRequestAdapter
from scheduler.clock import Clock, SystemClock
from scheduler.db.session import Database
from scheduler.engine.runner import notification_sender
from scheduler.security.secrets import SecretBox
from scheduler.services import cloudservices, collections, jobs
from scheduler.services.operations import Handler, OperationRunner
from scheduler.settings import Settings, metrics_directory

OPERATION_HANDLERS: dict[str, Handler] = {
    "cloudservice.create": cloudservices.finish_create_cloud_service,
    "cloudservice.delete": collections.finish_delete_cloud_service,
    "collection.put": collections.finish_put_collection,
    "collection.delete": collections.finish_delete_collection,
}


def request_database(settings: Settings) -> Database:
    """The API's database. SQLite: a connection for every request thread and the operation
    runner. PostgreSQL: `database.pool_size` connections, so that several nodes fit in the
    server's connection limit; a request waits `database.pool_timeout_seconds` for one, then
    gets 503 with Retry-After."""
    if settings.database_url.startswith("sqlite"):
        # A request waits no longer for the write lock than for a pooled connection, so
        # that a lock another process holds ends in a 503 within the request's time.
        return Database(settings.database_url, pool_size=settings.server.threads + 2,
                        lock_timeout=settings.database.pool_timeout_seconds)
    return Database(settings.database_url, pool_size=settings.database.pool_size,
                    max_overflow=0, pool_timeout=settings.database.pool_timeout_seconds)


def create_app(
    settings: Settings,
    clock: Clock | None = None,
    *,
    db: Database | None = None,
    background: bool = True,
) -> Flask:
    """Build the management API. With `background`, asynchronous operations run on a thread;
    without, they run inside the request (tests). Its request metrics are shared with the
    server's other processes when they share theirs, else kept in a private registry."""
    clock = clock or SystemClock()
    db = db or request_database(settings)
    node_id = uuid.uuid4().hex[:16]
    handlers: dict[str, Handler] = {**OPERATION_HANDLERS, "collection.jobs": functools.partial(
        jobs.finish_set_job_states, clock=clock, home=settings.home,
        check_enabled=check_enabling)}
    runner = OperationRunner(db, clock, node_id, handlers, errors.status_of)
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = settings.server.max_body_bytes
    app.extensions["scheduler"] = Runtime(
        settings=settings, clock=clock, db=db,
        box=SecretBox.from_file(settings.path(settings.security.secret_key_file)),
        operations=runner, node_id=node_id, public_url=public_url(settings),
        notifier=notification_sender(settings, clock),
    )
    metrics = RequestMetrics(shared=metrics_directory() is not None)
    app.extensions["scheduler.metrics"] = metrics
    api.init_app(app, metrics)
    ui.init_app(app)
    app.wsgi_app = AzureRequestAdapter(app.wsgi_app)  # type: ignore[method-assign]
    if background:
        runner.start()
    return app


def count_refused_certificate(app: Flask, reason: str) -> None:
    """Count a client certificate that the app's server refused before any request."""
    metrics: RequestMetrics = app.extensions["scheduler.metrics"]
    metrics.count_auth_failure(reason)


def stop_background(app: Flask) -> None:
    """Stop the app's background work, handing unfinished operations back."""
    runtime: Runtime = app.extensions["scheduler"]
    runtime.operations.stop()
    runtime.db.dispose()
