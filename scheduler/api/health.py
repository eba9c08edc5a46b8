"""Health for load balancers: `GET /healthz` and `GET /readyz`, without a client certificate."""

from __future__ import annotations

from flask import Blueprint, Response

from scheduler.api.engines import engine_state, live_since
from scheduler.api.responses import json_response
from scheduler.api.runtime import read_connection
from scheduler.services.leases import engine_health, unrunnable_total

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
    """200 when the database answers and some engine node's heartbeat is recent, else 503
    naming what is not ready. `engines` counts the live engine nodes, and `engine` says
    `ok`, or, on a node with an engine of its own, that it is not running, which leaves the
    node ready while another engine runs: its API still serves. With the attempts the live
    engine nodes could not make in the last minute, by reason (jobs faulted over their
    secrets or definition, calls that could not be prepared), and the executions that wait
    for engine nodes none of which is live (their `runOn`'s), with those nodes' names:
    neither ever makes a node unready."""
    body: dict[str, object] = {"status": "not ready", "database": "ok"}
    health = engine_health(read_connection, live_since())
    nodes = health.nodes
    ready = health.database_error is None and bool(nodes)
    if health.database_error is not None:
        body.update(database=health.database_error, engine="unknown")
    else:
        body.update(engine=engine_state(nodes), engines=len(nodes),
                    unrunnableAttemptsLastMinute=unrunnable_total(
                        node.unrunnable for node in nodes),
                    executionsWaitingForNodes={"count": health.waiting.executions,
                                               "nodes": list(health.waiting.names)})
    if ready:
        body["status"] = "ready"
    return json_response(body, 200 if ready else 503)
