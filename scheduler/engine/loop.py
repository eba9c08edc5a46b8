"""The firing engine: turn due occurrences into executions, run them, record what happened.

The database is the coordinator. A tick claims due jobs (rows locked with SKIP LOCKED on
PostgreSQL; SQLite has one writer at a time), inserts one execution per occurrence under a
unique (job, scheduled time) key and moves each job's next fire time on, in one transaction.
Executions are then leased, run on the event loop, and their outcome recorded only by the node
that still holds the lease.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from scheduler.actions.http import HttpCaller, HttpOutcome
from scheduler.clock import Clock
from scheduler.db.models import Execution, Job, JobCollection
from scheduler.db.session import Database
from scheduler.domain.occurrences import upcoming
from scheduler.domain.recurrence import Recurrence
from scheduler.engine import recorder
from scheduler.engine.definition import (
    MAIN_ACTION,
    ExecutionContext,
    action_named,
    http_request,
)
from scheduler.job_document import stored_schedule, with_secrets
from scheduler.services.cloudservices import DELETING
from scheduler.services.secrets import SecretBox

log = logging.getLogger(__name__)

MAX_MISSED_RECORDED = 1000
SCHEDULE_CACHE_SIZE = 100_000
ONE_MICROSECOND = timedelta(microseconds=1)


@dataclass(frozen=True)
class EngineOptions:
    """How the engine paces itself."""

    lease: timedelta = timedelta(seconds=90)
    batch: int = 500
    max_sleep: float = 2.0
    timeout: float = 60.0
    history_keep: int = 1000
    history_max_age: timedelta = timedelta(days=60)
    concurrency: int = 2000


Finished = tuple["recorder.AttemptRecord", Mapping[str, Any]]


@dataclass
class _FirePlan:
    """What one tick does with one due job."""

    job: Job
    start: datetime | None
    recurrence: Recurrence | None
    fire: datetime
    missed: list[datetime]
    rows: list[dict[str, Any]]


@dataclass
class Claimed:
    """An execution this node leased, with what running it needs."""

    execution_id: str
    action_name: str
    context: ExecutionContext
    document: Mapping[str, Any]


class Engine:
    """One engine node. Tests drive it with `tick(now)` and `run_due(now)`."""

    def __init__(self, db: Database, box: SecretBox, clock: Clock, node_id: str,
                 caller: HttpCaller, options: EngineOptions | None = None) -> None:
        self.db, self.box, self.clock, self.node_id = db, box, clock, node_id
        self.caller = caller
        self.options = options or EngineOptions()
        self._schedules: OrderedDict[tuple[int, str],
                                     tuple[datetime | None, Recurrence | None]] = OrderedDict()

    # --- occurrences -> executions ---------------------------------------------------------

    def tick(self, now: datetime) -> int:
        """Create the executions of every occurrence due by `now`; returns how many fire."""
        with self.db.transaction() as session:
            plans = [self._plan(job, now) for job in self._claim_due_jobs(session, now)]
            rows = [row for plan in plans for row in plan.rows]
            inserted = recorder.insert_executions(session, rows)
            for plan in plans:
                self._apply(session, plan, inserted, now)
            return len(plans)

    def _claim_due_jobs(self, session: Session, now: datetime) -> list[Job]:
        query = (
            select(Job)
            .join(JobCollection, JobCollection.id == Job.collection_id)
            .where(Job.next_execution_time <= now, Job.state == "enabled",
                   JobCollection.lifecycle != DELETING, JobCollection.state == "Started")
            .order_by(Job.next_execution_time)
            .limit(self.options.batch)
        )
        if not self.db.is_sqlite:
            query = query.with_for_update(of=Job, skip_locked=True)
        return list(session.scalars(query))

    def _schedule(self, job: Job) -> tuple[datetime | None, Recurrence | None]:
        """The job's start and recurrence, parsed once per version of the job."""
        key = (job.id, job.etag)
        found = self._schedules.get(key)
        if found is None:
            found = stored_schedule(json.loads(job.definition))
            self._schedules[key] = found
            if len(self._schedules) > SCHEDULE_CACHE_SIZE:
                self._schedules.popitem(last=False)
        else:
            self._schedules.move_to_end(key)
        return found

    def _plan(self, job: Job, now: datetime) -> _FirePlan:
        """Fire a job once for everything due; the occurrences before that are missed."""
        start, recurrence = self._schedule(job)
        assert job.next_execution_time is not None
        times = upcoming(recurrence, start, job.created_at, job.next_execution_time,
                         job.execution_count)
        due = list(itertools.takewhile(lambda t: t <= now, times)) or [job.next_execution_time]
        fire, missed = due[-1], due[:-1][-MAX_MISSED_RECORDED:]
        rows = [self._execution_row(job, t, recorder.MISSED, now) for t in missed]
        rows.append(self._execution_row(job, fire, recorder.PENDING, now))
        return _FirePlan(job, start, recurrence, fire, missed, rows)

    def _apply(self, session: Session, plan: _FirePlan, inserted: set[tuple[int, datetime]],
               now: datetime) -> None:
        """Count what was inserted and move the job's next fire time on."""
        job = plan.job
        for scheduled in plan.missed:
            if (job.id, scheduled) in inserted:
                session.add(recorder.missed_history(job, scheduled, plan.fire, now))
        if (job.id, plan.fire) in inserted:
            job.execution_count += 1
        later = upcoming(plan.recurrence, plan.start, job.created_at,
                         plan.fire + ONE_MICROSECOND, job.execution_count)
        job.next_execution_time = next(later, None)

    def _execution_row(self, job: Job, scheduled: datetime, status: str,
                       now: datetime) -> dict[str, Any]:
        return {
            "id": recorder.new_execution_id(), "job_pk": job.id, "scheduled_time": scheduled,
            "trigger": "schedule", "status": status, "action_name": MAIN_ACTION, "attempt": 0,
            "repeat_count": job.execution_count,
            "next_attempt_at": scheduled if status == recorder.PENDING else None,
            "created_at": now, "end_time": now if status == recorder.MISSED else None,
        }

    # --- executions -> attempts ------------------------------------------------------------

    def claim_executions(self, now: datetime, limit: int | None = None) -> list[Claimed]:
        """Lease runnable executions to this node."""
        with self.db.transaction() as session:
            query = (select(Execution.id).where(recorder.runnable(now))
                     .order_by(Execution.next_attempt_at).limit(limit or self.options.batch))
            if not self.db.is_sqlite:
                query = query.with_for_update(skip_locked=True)
            ids = list(session.scalars(query))
            if not ids:
                return []
            session.execute(update(Execution).where(Execution.id.in_(ids)).values(
                status=recorder.RUNNING, lease_owner=self.node_id,
                lease_until=now + self.options.lease, node=self.node_id,
                start_time=func.coalesce(Execution.start_time, now)))
            rows = session.execute(
                select(Execution, Job, JobCollection.name)
                .join(Job, Job.id == Execution.job_pk)
                .join(JobCollection, JobCollection.id == Job.collection_id)
                .where(Execution.id.in_(ids))).all()
            claimed = []
            for execution, job, collection in rows:
                job.last_execution_time = now
                document = with_secrets(json.loads(job.definition), self.box.open(job.secrets))
                parameters = {**document.get("parameters", {}),
                              **json.loads(execution.parameters or "{}")}
                claimed.append(Claimed(execution.id, execution.action_name, ExecutionContext(
                    job.job_id, collection, execution.id, execution.scheduled_time,
                    parameters), document))
            return claimed

    async def attempt(self, claimed: Claimed) -> Finished:
        """Make one attempt; what it gives back is recorded by `record`."""
        started = self.clock.now()
        action = action_named(claimed.document, claimed.action_name) or {}
        if action.get("type") in ("http", "https"):
            outcome = await self.caller.call(http_request(action, claimed.context),
                                             self.options.timeout)
        else:
            outcome = HttpOutcome(False, f"{action.get('type')} actions are not supported by "
                                         "this version of the engine")
        record = recorder.AttemptRecord(claimed.execution_id, self.node_id, outcome, started,
                                        self.clock.now())
        return record, claimed.document

    def record(self, finished: list[Finished]) -> None:
        """Record finished attempts, many to a transaction."""
        if not finished:
            return
        with self.db.transaction() as session:
            recorder.record_attempts(session, finished)

    async def run_due(self, now: datetime) -> int:
        """Run every execution runnable at `now`, all at once; returns how many ran."""
        claimed = await asyncio.to_thread(self.claim_executions, now)
        finished = await asyncio.gather(*(self.attempt(c) for c in claimed))
        await asyncio.to_thread(self.record, list(finished))
        return len(claimed)

    # --- the loop --------------------------------------------------------------------------

    def next_wakeup(self) -> datetime | None:
        """The earliest time anything becomes due."""
        with self.db.snapshot() as session:
            job_time = session.scalar(select(func.min(Job.next_execution_time)).where(
                Job.state == "enabled"))
            attempt_time = session.scalar(select(func.min(Execution.next_attempt_at)).where(
                Execution.status == recorder.PENDING))
            lease_time = session.scalar(select(func.min(Execution.lease_until)).where(
                Execution.status == recorder.RUNNING))
        times = [t for t in (job_time, attempt_time, lease_time) if t is not None]
        return min(times) if times else None

    def prune(self, now: datetime) -> int:
        """Apply history retention."""
        with self.db.transaction() as session:
            return recorder.prune_history(session, now, self.options.history_keep,
                                          self.options.history_max_age)

    async def run_forever(self, stop: asyncio.Event, wake: asyncio.Event | None = None
                          ) -> None:
        """Tick, start due attempts without waiting for earlier ones, record what finished,
        and sleep until the next thing is due (at most `max_sleep`), `wake`, or a finish.

        On `stop`, attempts in flight are finished and recorded before returning.
        """
        wake = wake or asyncio.Event()
        inflight: set[asyncio.Task[Finished]] = set()
        finished: list[Finished] = []

        def collect(task: asyncio.Task[Finished]) -> None:
            inflight.discard(task)
            if not task.cancelled() and task.exception() is None:
                finished.append(task.result())
            wake.set()

        last_prune = self.clock.now()
        while not stop.is_set():
            wake.clear()  # a signal during the pass below makes for another pass at once
            now = self.clock.now()
            try:
                await self._pass(now, inflight, finished, collect)
                if now - last_prune > timedelta(minutes=10):
                    await asyncio.to_thread(self.prune, now)
                    last_prune = now
                wakeup = await asyncio.to_thread(self.next_wakeup)
            except Exception:
                log.exception("engine pass failed; retrying")
                wakeup = None
            delay = self.options.max_sleep
            if wakeup is not None:
                delay = min(delay, max(0.0, (wakeup - self.clock.now()).total_seconds()))
            await _first_of(stop, wake, delay)
        if inflight:
            await asyncio.wait(inflight)
        if finished:
            await asyncio.to_thread(self.record, finished)

    def extend_leases(self, execution_ids: list[str], now: datetime) -> None:
        """Keep the executions whose calls are still running leased to this node."""
        with self.db.transaction() as session:
            session.execute(update(Execution).where(
                Execution.id.in_(execution_ids), Execution.lease_owner == self.node_id,
                Execution.status == recorder.RUNNING,
            ).values(lease_until=now + self.options.lease))

    async def _pass(self, now: datetime, inflight: set[asyncio.Task[Finished]],
                    finished: list[Finished], collect: Any) -> None:
        await asyncio.to_thread(self.tick, now)
        if inflight:
            running = [task.get_name() for task in inflight]
            await asyncio.to_thread(self.extend_leases, running, now)
        room = self.options.concurrency - len(inflight)
        if room > 0:
            limit = min(room, self.options.batch)
            for claimed in await asyncio.to_thread(self.claim_executions, now, limit):
                task = asyncio.create_task(self.attempt(claimed), name=claimed.execution_id)
                inflight.add(task)
                task.add_done_callback(collect)
        if finished:
            batch = finished[:]
            finished.clear()
            await asyncio.to_thread(self.record, batch)


async def _first_of(stop: asyncio.Event, wake: asyncio.Event, timeout: float) -> None:
    """Sleep until either event is set or the timeout passes."""
    waiters = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(wake.wait())]
    _done, pending = await asyncio.wait(waiters, timeout=timeout,
                                        return_when=asyncio.FIRST_COMPLETED)
    for waiter in pending:
        waiter.cancel()
