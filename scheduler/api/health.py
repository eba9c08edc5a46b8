"""Health for load balancers: `GET /healthz` and `GET /readyz`, without a client certificate."""

from __future__ import annotations

from datetime import timedelta

from flask import Blueprint, Response
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from scheduler.api.responses import json_response
from scheduler.api.runtime import read_connection, runtime
from scheduler.services.leases import Heartbeats

bp = Blueprint("health", __name__)

# Paths anyone may ask: what they tell is whether this process, its database and some engine
# are up, nothing about a tenant.
HEALTH_PATHS = frozenset({"/healthz", "/readyz"})


@bp.get("/healthz")
def healthz() -> Response:
    """200 while the process serves requests."""
    return json_response({"status": "ok"})


@bp.get("/readyz")
def readyz() -> Response:
    """200 when the database answers and an engine node's heartbeat is recent, else 503 naming
    what is not ready."""
    rt = runtime()
    checks = {"database": "ok", "engine": "ok"}
    try:
        conn = read_connection()
        conn.execute(text("SELECT 1"))
        since = rt.clock.now() - timedelta(seconds=rt.settings.engine.dead_after_seconds)
        if conn.execute(Heartbeats().live(since).limit(1)).first() is None:
            checks["engine"] = "no engine heartbeat in the last " \
                f"{rt.settings.engine.dead_after_seconds:g} s"
        conn.rollback()
    except SQLAlchemyError as exc:
        checks["database"] = f"unreachable: {type(exc).__name__}"
        checks["engine"] = "unknown"
    ready = all(value == "ok" for value in checks.values())
    return json_response({"status": "ready" if ready else "not ready", **checks},
                         200 if ready else 503)
