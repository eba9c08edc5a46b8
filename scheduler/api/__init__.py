"""The HTTPS management API: Flask blueprints, wire formats, authentication."""

from __future__ import annotations

from flask import Flask, Response

from scheduler.api import (
    access,
    alerts,
    audit,
    auth,
    calendars,
    callbacks,
    certificates,
    channels,
    cloudservices,
    dashboard_links,
    executions,
    health,
    jobs,
    oauth,
    operations,
)
from scheduler.api.arm import collections as arm_collections
from scheduler.api.arm import jobs as arm_jobs
from scheduler.api.origin import refuse_cross_site_request
from scheduler.api.requests import refuse_nul_characters
from scheduler.api.responses import register_error_handlers
from scheduler.api.runtime import close_read_connection, request_id


def init_app(app: Flask, metrics: access.RequestMetrics) -> None:
    """Register the access log and metrics, authentication, every route and the error
    documents."""
    access.init_app(app, metrics)  # first, so that it times everything after it
    app.before_request(refuse_nul_characters)  # before anything reads a name in the URL
    # Before authentication: what another site's page sent is refused unread, whoever sent it.
    app.before_request(refuse_cross_site_request)
    auth.init_app(app)
    for module in (health, oauth, cloudservices, jobs, executions, operations, certificates,
                   audit, calendars, channels, alerts, arm_collections, arm_jobs,
                   dashboard_links, callbacks):
        app.register_blueprint(module.bp)
    register_error_handlers(app)
    app.teardown_request(close_read_connection)

    @app.after_request
    def _add_request_id(response: Response) -> Response:
        response.headers["x-ms-request-id"] = request_id()
        return response
