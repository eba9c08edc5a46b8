"""How an engine node paces itself, derived from the home's settings in one place."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from scheduler.settings import EngineSettings, OutboundSettings


@dataclass(frozen=True)
class EngineOptions:
    """How the engine paces itself: its settings (`EngineSettings`, where their defaults
    are), in the units the engine works in, and what its database allows. Made by
    `engine_options`.

    `lookahead`: occurrences due this soon are made into executions, leased and their calls
    readied ahead of time, so that thousands due at one instant go out at that instant rather
    than a tick after another. Its half second keeps the ticks that ready the occurrences of
    whole-second schedules half a second away from the instants those occurrences go out.
    `concurrency`: at most this many attempts are held at once, readied, in flight or
    finished with their outcome not yet recorded; the node takes no new batch while it
    holds that many.
    `timeout`: how long an attempt may take, in seconds, unless its action or step says
    otherwise; `longest_timeout`: the most any of them may say (`outbound.max_timeout`).
    `heartbeat`: how often the node says it is alive; one that has not for `dead_after` is
    dead, and its executions are taken over. A node sends a readied call only while its own
    last heartbeat is younger than `dead_after` less one `heartbeat`, so that no node takes
    over a call it may still send.
    `sole`: no other engine runs on this database (SQLite: the home's file lock), so at start
    every execution another node held is this node's to take over.
    `ticks_at_once`: how many ticks a pass runs at once while catching up: two where the
    database takes several writers (PostgreSQL, SKIP LOCKED keeping their jobs apart), so
    that one waits for the server while the other runs; one on SQLite's single writer.
    `node_name`: the name the node runs under, which jobs' `runOn` lists (`engine.node_name`,
    else the host's name); empty, the node's id.
    `public_url`: the service's own URL (`server.public_url`, or as served), which callback
    URLs are made under.
    """

    lease: timedelta
    batch: int
    max_sleep: float
    timeout: float
    history_keep: int
    history_max_age: timedelta
    concurrency: int
    lookahead: timedelta
    heartbeat: timedelta
    dead_after: timedelta
    sole: bool
    ticks_at_once: int
    longest_timeout: float = OutboundSettings().longest_timeout.total_seconds()
    node_name: str = ""
    public_url: str = ""

    @property
    def alive_for(self) -> timedelta:
        """How long after a heartbeat began the node is sure no other takes over its work."""
        return self.dead_after - self.heartbeat


def engine_options(settings: EngineSettings, *, sqlite: bool,
                   outbound: OutboundSettings | None = None, public_url: str = ""
                   ) -> EngineOptions:
    """The options an engine node runs with: its settings, and what its database allows.

    On SQLite the home's file lock lets one engine run (`sole`), and one writer at a time
    makes a second tick at once useless."""
    return EngineOptions(
        lease=timedelta(seconds=settings.lease_seconds), batch=settings.batch,
        max_sleep=settings.max_sleep_seconds, timeout=settings.timeout_seconds,
        history_keep=settings.history_keep,
        history_max_age=timedelta(days=settings.history_max_age_days),
        concurrency=settings.concurrency,
        lookahead=timedelta(seconds=settings.lookahead_seconds),
        heartbeat=timedelta(seconds=settings.heartbeat_seconds),
        dead_after=timedelta(seconds=settings.dead_after_seconds),
        sole=sqlite, ticks_at_once=1 if sqlite else 2,
        longest_timeout=(outbound or OutboundSettings()).longest_timeout.total_seconds(),
        node_name=settings.own_node_name(), public_url=public_url)
