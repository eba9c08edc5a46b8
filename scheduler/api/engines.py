"""What the API knows of the engine nodes, from their heartbeat rows: which are alive, whether
this node's own engine is (`serve --role all`), and what a run started while none is alive
is told."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta

from flask import Flask, Response, current_app
from sqlalchemy.orm import Session

from scheduler.api.runtime import runtime
from scheduler.services.leases import LiveNode, any_engine_alive, live_node_names
from scheduler.services.records import ExecutionRecord

# Where the app keeps the start of its own engine's node ids, when it has an engine.
OWN_ENGINE = "scheduler.own_engine"
# What a run started while no engine is alive anywhere is told, in its body and a header.
QUEUED_FIELD = "queued"
QUEUED_HEADER = "Scheduler-Queued"
NO_ENGINE = "no engine is running"
NOT_RUNNING = "not running"


def expect_own_engine(app: Flask, node_prefix: str) -> Flask:
    """Make the app's `/readyz` tell whether this node's own engine runs: the engine nodes
    whose ids start with `node_prefix` are its runs."""
    app.extensions[OWN_ENGINE] = node_prefix
    return app


def dead_after_seconds() -> float:
    """How old an engine node's last heartbeat is when the node counts as gone."""
    return float(runtime().settings.engine.dead_after_seconds)


def live_since() -> datetime:
    """When the oldest heartbeat of a node that counts as alive now came."""
    return runtime().clock.now() - timedelta(seconds=dead_after_seconds())


def live_names_for(session: Session, executions: Iterable[ExecutionRecord]) -> set[str]:
    """The names of the live engine nodes, read only when one of these executions names
    the nodes it may run on (what says whether it waits for one)."""
    if not any(execution.run_on for execution in executions):
        return set()
    return live_node_names(session, live_since())


def engine_state(nodes: Sequence[LiveNode]) -> str:
    """`ok`; for a node with an engine of its own, `not running: ...` while that engine's
    heartbeat is missing (whatever other nodes run); else, with no engine alive anywhere,
    that no heartbeat is recent."""
    seconds = f"{dead_after_seconds():g}"
    own = current_app.extensions.get(OWN_ENGINE)
    if own is not None and not any(node.node_id.startswith(own) for node in nodes):
        return (f"{NOT_RUNNING}: this node's engine has sent no heartbeat in the last "
                f"{seconds} s")
    if not nodes:
        return f"no engine heartbeat in the last {seconds} s"
    return "ok"


def note_queued_without_engine(session: Session, answer: Response) -> Response:
    """A run's answer, told that the run waits (`"queued": "no engine is running"` in its body
    and the `Scheduler-Queued` header) when no engine node is alive anywhere: it runs once
    one is."""
    if any_engine_alive(session, live_since()):
        return answer
    body = answer.get_json()
    body[QUEUED_FIELD] = NO_ENGINE
    # As `json_response` writes it; set_data sets Content-Length again.
    answer.set_data(json.dumps(body, separators=(",", ":")))
    answer.headers[QUEUED_HEADER] = NO_ENGINE
    return answer
