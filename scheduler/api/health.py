"""Health for load balancers: `GET /healthz` and `GET /readyz`, without a client certificate."""

from __future__ import annotations

from datetime import timedelta

from flask import Blueprint, Response
from sqlalchemy.exc import SQLAlchemyError

from scheduler.api.responses import json_response
from scheduler.api.runtime import read_connection, runtime
from scheduler.services.leases import Heartbeats, unrunnable_total

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
    what is not ready; with the attempts the live engine nodes could not make in the last
    minute, by reason (jobs faulted over their secrets or definition, calls that could not
    be prepared), which never make a node unready."""
    rt = runtime()
    checks = {"database": "ok", "engine": "ok"}
    unrunnable: dict[str, int] | None = None
    try:
        conn = read_connection()
        since = rt.clock.now() - timedelta(seconds=rt.settings.engine.dead_after_seconds)
        # One short read of the engine nodes' rows (a handful) answers both.
        figures = conn.execute(Heartbeats().live_unrunnable(since)).scalars().all()
        conn.rollback()
        if not figures:
            checks["engine"] = "no engine heartbeat in the last " \
                f"{rt.settings.engine.dead_after_seconds:g} s"
        unrunnable = unrunnable_total(figures)
    except SQLAlchemyError as exc:
        checks["database"] = f"unreachable: {type(exc).__name__}"
        checks["engine"] = "unknown"
    ready = all(value == "ok" for value in checks.values())
    body: dict[str, object] = {"status": "ready" if ready else "not ready", **checks}
    if unrunnable is not None:
        body["unrunnableAttemptsLastMinute"] = unrunnable
    return json_response(body, 200 if ready else 503)
