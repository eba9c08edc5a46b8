"""Asynchronous operations: durable records, run in the background, finished after a crash."""

from __future__ import annotations

import json
import logging
import queue
import threading
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, select, update
from sqlalchemy.orm import Session

from scheduler.clock import Clock
from scheduler.db.compiled import CompiledStatement
from scheduler.db.models import OPERATIONS, Operation
from scheduler.db.outage import Outage, is_unavailable
from scheduler.db.session import Database
from scheduler.services.errors import NotFound, SchedulerError
from scheduler.services.leases import Leases

log = logging.getLogger(__name__)

IN_PROGRESS, SUCCEEDED, FAILED = "InProgress", "Succeeded", "Failed"
LEASE = timedelta(seconds=10)
LEASES = Leases(OPERATIONS, IN_PROGRESS)

# A handler does the work of one kind of operation; it may extend the lease as it goes.
Handler = Callable[[Database, Mapping[str, Any], Callable[[], None]], None]
# The HTTP status an operation that failed with an error records (the API's mapping).
StatusOf = Callable[[SchedulerError], int]


def start_operation(
    session: Session, operation_id: str, subscription_id: str, kind: str,
    payload: Mapping[str, Any], now: datetime, owner: str,
) -> Operation:
    """Record an operation as InProgress, leased to the node that will run it."""
    operation = Operation(
        id=operation_id, subscription_id=subscription_id, kind=kind,
        payload=json.dumps(payload), status=IN_PROGRESS, lease_owner=owner,
        lease_until=now + LEASE, created_at=now, updated_at=now,
    )
    session.add(operation)
    return operation


# Made on every write of a job: run on the cursor, without the session's unit of work.
_FINISHED = CompiledStatement(OPERATIONS.insert().values({
    name: bindparam(name, type_=OPERATIONS.c[name].type)
    for name in ("id", "subscription_id", "kind", "payload", "status", "http_status",
                 "created_at", "updated_at")}))


def record_finished_operation(
    session: Session, operation_id: str, subscription_id: str, kind: str, status_code: int,
    now: datetime,
) -> None:
    """Record a synchronous call, so that its request id can be polled like any other."""
    _FINISHED.execute(session.connection(), {
        "id": operation_id, "subscription_id": subscription_id, "kind": kind, "payload": "{}",
        "status": SUCCEEDED, "http_status": status_code, "created_at": now, "updated_at": now,
    })


def get_operation(session: Session, subscription_id: str, operation_id: str) -> Operation:
    """An operation of the subscription; 404 for any other."""
    key = operation_id.replace("-", "").lower()
    operation = session.get(Operation, key)
    if operation is None or operation.subscription_id != subscription_id:
        raise NotFound(f"The operation {operation_id} was not found.")
    return operation


class OperationRunner:
    """Runs operations on a background thread and takes over those whose node died."""

    def __init__(
        self, db: Database, clock: Clock, owner: str, handlers: Mapping[str, Handler],
        status_of: StatusOf, scan_every: float = 2.0,
    ) -> None:
        self.db, self.clock, self.owner, self.handlers = db, clock, owner, handlers
        self.status_of = status_of
        self.scan_every = scan_every
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()

    def submit(self, operation_id: str) -> None:
        """Run an operation this node has just started."""
        if self._thread is None:
            self.run(operation_id)
        else:
            self._queue.put(operation_id)

    def start(self) -> None:
        """Start the background thread."""
        self._thread = threading.Thread(target=self._loop, name="operations", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop after the current operation and hand the unfinished ones back at once."""
        self._stopping.set()
        self._queue.put(None)
        if self._thread is not None:
            self._thread.join(timeout=30)
        with self.db.transaction() as session:
            session.execute(LEASES.release_all(self.owner))

    def _loop(self) -> None:
        """Run what is submitted and what was abandoned, until stopped: an error, the
        database's absence included, is logged and waited out, and never ends the loop."""
        outage = Outage(log, "operations")
        while not self._stopping.is_set():
            try:
                self._take_and_run()
                outage.succeeded()
            except Exception as exc:
                if not is_unavailable(exc):
                    log.exception("operations: a round failed; going on")
                    self._stopping.wait(self.scan_every)
                else:
                    # An operation cut short stays in progress under its lease: once the
                    # lease has lapsed, `take_over_abandoned` runs it again, here or anywhere.
                    self._stopping.wait(outage.failed(exc))

    def _take_and_run(self) -> None:
        """Run the abandoned operations, then wait for a submitted one and run it."""
        self.take_over_abandoned()
        try:
            operation_id = self._queue.get(timeout=self.scan_every)
        except queue.Empty:
            return
        if operation_id is not None:
            self.run(operation_id)

    def take_over_abandoned(self) -> int:
        """Run every InProgress operation whose lease has run out; returns how many."""
        now = self.clock.now()
        with self.db.snapshot() as session:
            ids = list(session.scalars(select(Operation.id).where(LEASES.lapsed(now))
                                       .limit(100)))
        taken = 0
        for operation_id in ids:
            if self._claim(operation_id, now):
                taken += 1
                self.run(operation_id)
        return taken

    def _claim(self, operation_id: str, now: datetime) -> bool:
        with self.db.transaction() as session:
            result = session.execute(update(Operation).where(
                Operation.id == operation_id, LEASES.lapsed(now),
            ).values(**LEASES.taken(self.owner, now + LEASE)))
            return bool(result.rowcount)  # type: ignore[attr-defined]

    def _extend_lease(self, operation_id: str) -> None:
        with self.db.transaction() as session:
            session.execute(update(Operation).where(Operation.id == operation_id).values(
                **LEASES.taken(self.owner, self.clock.now() + LEASE)))

    def run(self, operation_id: str) -> None:
        """Do an operation's work and record how it ended."""
        with self.db.snapshot() as session:
            operation = session.get(Operation, operation_id)
            if operation is None or operation.status != IN_PROGRESS:
                return
            kind, payload = operation.kind, json.loads(operation.payload)
        try:
            self.handlers[kind](self.db, payload, lambda: self._extend_lease(operation_id))
        except SchedulerError as exc:
            self._finish(operation_id, FAILED, self.status_of(exc), exc.code, exc.message)
        except Exception as exc:
            if is_unavailable(exc):
                raise  # not the operation's fault: it is run again once the database is back
            log.exception("operation %s (%s) failed", operation_id, kind)
            self._finish(operation_id, FAILED, 500, "InternalError", "The operation failed.")
        else:
            self._finish(operation_id, SUCCEEDED, 200, None, None)

    def _finish(
        self, operation_id: str, status: str, http_status: int, code: str | None,
        message: str | None,
    ) -> None:
        with self.db.transaction() as session:
            session.execute(update(Operation).where(Operation.id == operation_id).values(
                status=status, http_status=http_status, error_code=code,
                error_message=message, **LEASES.released(),
                updated_at=self.clock.now(),
            ))
