"""Leases and engine nodes' heartbeats as the services use them (see `scheduler.db.leases`),
and what the live nodes' heartbeats say together."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from scheduler.db.executions import WaitingForNodes, waiting_for_nodes
from scheduler.db.leases import Heartbeats, Leases, Moment, Owner

__all__ = ["EngineHealth", "Heartbeats", "Leases", "LiveNode", "Moment", "Owner",
           "WaitingForNodes", "any_engine_alive", "engine_health", "live_node_names",
           "live_nodes", "unrunnable_total"]


# No execution waits for nodes.
NONE_WAITING = WaitingForNodes(0, ())


@dataclass(frozen=True, slots=True)
class LiveNode:
    """An engine node whose heartbeat is recent, its name, and what it last said of the
    attempts it could not make (see `unrunnable_total`)."""

    node_id: str
    unrunnable: str | None
    name: str | None = None


@dataclass(frozen=True, slots=True)
class EngineHealth:
    """What the database says of the engines: the live nodes and the executions waiting
    for nodes none of which is live, or, when it could not be read, why
    (`database_error`)."""

    nodes: list[LiveNode]
    database_error: str | None = None
    waiting: WaitingForNodes = NONE_WAITING


def live_nodes(conn: Connection | Session, since: datetime) -> list[LiveNode]:
    """The engine nodes whose heartbeat came at `since` or later: one read of their rows (a
    handful)."""
    heartbeats = Heartbeats()
    query = heartbeats.live_unrunnable(since).add_columns(heartbeats.table.c.id,
                                                          heartbeats.table.c.name)
    return [LiveNode(node_id, figures, name) for figures, node_id, name in conn.execute(query)]


def live_node_names(session: Session, since: datetime) -> set[str]:
    """The names of the engine nodes whose heartbeat came at `since` or later."""
    return {name for name, in session.execute(Heartbeats().live_names(since)) if name}


def engine_health(connect: Callable[[], Connection], since: datetime) -> EngineHealth:
    """The live engine nodes and the executions that wait for nodes none of which is live,
    read in one short read on the connection `connect` gives, which ends its transaction;
    or why the database could not be read."""
    try:
        conn = connect()
        nodes = live_nodes(conn, since)
        waiting = waiting_for_nodes(conn, [node.name for node in nodes])
        conn.rollback()
    except SQLAlchemyError as exc:
        return EngineHealth([], f"unreachable: {type(exc).__name__}")
    return EngineHealth(nodes, waiting=waiting)


def any_engine_alive(session: Session, since: datetime) -> bool:
    """Whether some engine node's heartbeat came at `since` or later."""
    return session.execute(Heartbeats().live(since).limit(1)).first() is not None


def unrunnable_total(figures: Iterable[str | None]) -> dict[str, int]:
    """The sum, by reason, of what several nodes' heartbeats said of the attempts they could
    not make."""
    total: dict[str, int] = {}
    for text in figures:
        for reason, count in (json.loads(text) if text else {}).items():
            total[reason] = total.get(reason, 0) + int(count)
    return dict(sorted(total.items()))
