"""The firing engine: turn due occurrences into executions, run them, record what happened.

The database is the coordinator. A tick claims due jobs (rows locked with SKIP LOCKED on
PostgreSQL; SQLite has one writer at a time), inserts one execution per occurrence under a
unique (job, scheduled time) key and moves each job's next fire time on, in one transaction.
Executions are then leased, run on the event loop, and their outcome recorded only by the node
that still holds the lease.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import json
import logging
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Row, and_, func, select, update
from sqlalchemy.orm import Session

from scheduler.actions.base import ExecutionContext, Outcome, ReadyAction
from scheduler.actions.registry import ActionRegistry
from scheduler.clock import Clock
from scheduler.db.bulk import among, update_rows
from scheduler.db.models import EXECUTIONS, JOBS, Execution, Job, JobCollection
from scheduler.db.session import Database
from scheduler.domain.executions import MAIN_ACTION
from scheduler.domain.occurrences import upcoming
from scheduler.domain.recurrence import Recurrence
from scheduler.domain.states import JobState
from scheduler.engine import recorder
from scheduler.engine.definition import action_named
from scheduler.job_document import stored_schedule, with_secrets
from scheduler.services.cloudservices import DELETING
from scheduler.services.secrets import SecretBox

log = logging.getLogger(__name__)

MAX_MISSED_RECORDED = 1000
VERSION_CACHE_SIZE = 10_000
ONE_MICROSECOND = timedelta(microseconds=1)
RECORD_DELAY = timedelta(milliseconds=500)


@dataclass(frozen=True)
class EngineOptions:
    """How the engine paces itself.

    `lookahead`: occurrences due this soon are made into executions, leased and their calls
    readied ahead of time, so that thousands due at one instant go out at that instant rather
    than a tick after another. Its half second keeps the ticks that ready the occurrences of
    whole-second schedules half a second away from the instants those occurrences go out.
    `concurrency`: at most this many attempts are held at once, readied or in flight; the
    node takes no new batch while it holds that many.
    """

    lease: timedelta = timedelta(seconds=90)
    batch: int = 500
    max_sleep: float = 2.0
    timeout: float = 60.0
    history_keep: int = 1000
    history_max_age: timedelta = timedelta(days=60)
    concurrency: int = 20_000
    lookahead: timedelta = timedelta(seconds=2.5)


@dataclass(frozen=True)
class JobVersion:
    """One version (etag) of a job as the engine runs it: parsed and unsealed once."""

    job_id: str
    etag: str
    collection: str
    start: datetime | None
    recurrence: Recurrence | None
    document: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Claimed:
    """An execution this node leased, with what running it needs."""

    execution_id: str
    job_pk: int
    action_name: str
    attempt: int
    repeat_count: int
    scheduled_time: datetime
    parameters: Mapping[str, Any]
    version: JobVersion

    @property
    def context(self) -> ExecutionContext:
        """The values outbound headers and placeholders are made of."""
        version = self.version
        return ExecutionContext(
            version.job_id, version.collection, self.execution_id, self.scheduled_time,
            {**version.document.get("parameters", {}), **self.parameters})


@dataclass(frozen=True)
class Tick:
    """What one tick did: how many jobs fired, and the executions it leased to this node."""

    fired: int
    claimed: list[Claimed]


@dataclass
class _FirePlan:
    """What one tick does with one due job."""

    row: JobRow
    version: JobVersion
    fire: datetime
    missed: list[datetime]
    execution_id: str
    leased: bool


# A job fires only while these hold: enabled, in a started collection not being deleted.
_JOB_RUNS = (Job.state == JobState.ENABLED, JobCollection.state == "Started",
             JobCollection.lifecycle != DELETING)

# Everything a tick or a claim reads of a job, with its collection's name.
JobRow = Row[*tuple[Any, ...]]
_JOB_COLUMNS = (Job.id, Job.etag, Job.state, Job.job_id, JobCollection.name, Job.definition,
                Job.secrets, Job.created_at, Job.next_execution_time, Job.execution_count,
                Job.last_execution_time)


class Engine:
    """One engine node. Tests drive it with `tick(now)` and `run_due(now)`."""

    def __init__(self, db: Database, box: SecretBox, clock: Clock, node_id: str,
                 actions: ActionRegistry, options: EngineOptions | None = None) -> None:
        self.db, self.box, self.clock, self.node_id = db, box, clock, node_id
        self.actions = actions
        self.options = options or EngineOptions()
        self._versions: OrderedDict[tuple[int, str], JobVersion] = OrderedDict()

    # --- occurrences -> executions ---------------------------------------------------------

    def tick(self, now: datetime, horizon: datetime | None = None, lease: int = 0) -> Tick:
        """Create the executions of every occurrence due by `horizon` (default: `now`).

        Up to `lease` of the new executions are leased to this node at once and handed back,
        to be run at their scheduled time; the others wait, pending, for any node to claim.
        """
        with self.db.transaction() as session:
            due = self._due_jobs(session, horizon or now)
            plans = [self._plan(row, now, index < lease) for index, row in enumerate(due)]
            rows = [row for plan in plans for row in self._execution_rows(plan, now)]
            inserted = recorder.insert_executions(session, rows)
            history: list[dict[str, Any]] = []
            moves: list[dict[str, Any]] = []
            claimed: list[Claimed] = []
            for plan in plans:
                fired = (plan.row.id, plan.fire) in inserted
                history.extend(self._missed_history(plan, inserted, now))
                moves.append(self._move_on(plan, fired))
                if fired and plan.leased:
                    claimed.append(Claimed(plan.execution_id, plan.row.id, MAIN_ACTION, 0,
                                           plan.row.execution_count, plan.fire, {},
                                           plan.version))
            update_rows(session.connection(), JOBS, "id", moves)
            recorder.insert_history(session, history)
            return Tick(len(plans), claimed)

    def _due_jobs(self, session: Session, horizon: datetime) -> list[JobRow]:
        query = (
            select(*_JOB_COLUMNS)
            .join(JobCollection, JobCollection.id == Job.collection_id)
            .where(Job.next_execution_time <= horizon, *_JOB_RUNS)
            .order_by(Job.next_execution_time)
            .limit(self.options.batch)
        )
        if not self.db.is_sqlite:
            query = query.with_for_update(of=Job, skip_locked=True)
        return list(session.execute(query).all())

    def _version(self, row: JobRow) -> JobVersion:
        """The job version of a row read with `_JOB_COLUMNS`, parsed once per etag."""
        key = (row.id, row.etag)
        found = self._versions.get(key)
        if found is not None:
            self._versions.move_to_end(key)
            return found
        definition = json.loads(row.definition)
        start, recurrence = stored_schedule(definition)
        document = with_secrets(definition, self.box.open(row.secrets)) if row.secrets \
            else definition
        found = JobVersion(row.job_id, row.etag, row.name, start, recurrence, document)
        self._versions[key] = found
        if len(self._versions) > VERSION_CACHE_SIZE:
            self._versions.popitem(last=False)
        return found

    def _plan(self, row: JobRow, now: datetime, leased: bool) -> _FirePlan:
        """Fire a job once for everything due; the occurrences before that are missed."""
        version = self._version(row)
        times = upcoming(version.recurrence, version.start, row.created_at,
                         row.next_execution_time, row.execution_count)
        due = list(itertools.takewhile(lambda t: t <= now, times)) or [row.next_execution_time]
        return _FirePlan(row, version, due[-1], due[:-1][-MAX_MISSED_RECORDED:],
                         recorder.new_execution_id(), leased)

    def _execution_rows(self, plan: _FirePlan, now: datetime) -> list[dict[str, Any]]:
        job_pk, count = plan.row.id, plan.row.execution_count
        rows = [_execution_row(recorder.new_execution_id(), job_pk, t, count, now,
                               status=recorder.MISSED, end_time=now) for t in plan.missed]
        if plan.leased:
            rows.append(_execution_row(
                plan.execution_id, job_pk, plan.fire, count, now, status=recorder.RUNNING,
                lease_owner=self.node_id, lease_until=now + self.options.lease,
                node=self.node_id, start_time=max(now, plan.fire)))
        else:
            rows.append(_execution_row(plan.execution_id, job_pk, plan.fire, count, now,
                                       status=recorder.PENDING, next_attempt_at=plan.fire))
        return rows

    def _missed_history(self, plan: _FirePlan, inserted: set[tuple[int, datetime]],
                        now: datetime) -> list[dict[str, Any]]:
        row = plan.row
        return [recorder.missed_history(row.id, row.state, row.execution_count, scheduled,
                                        plan.fire, now)
                for scheduled in plan.missed if (row.id, scheduled) in inserted]

    def _move_on(self, plan: _FirePlan, fired: bool) -> dict[str, Any]:
        """The job's counters and next fire time once this occurrence is made."""
        row, version = plan.row, plan.version
        count = row.execution_count + (1 if fired else 0)
        later = upcoming(version.recurrence, version.start, row.created_at,
                         plan.fire + ONE_MICROSECOND, count)
        return {"id": row.id, "next_execution_time": next(later, None), "execution_count": count,
                "last_execution_time": plan.fire if fired else row.last_execution_time}

    # --- executions -> attempts ------------------------------------------------------------

    def claim_executions(self, now: datetime, limit: int | None = None) -> list[Claimed]:
        """Lease runnable executions to this node: retries, error actions, those a tick left
        pending, and those whose node's lease ran out. Those whose job stopped (disabled,
        its collection suspended or being deleted) are canceled instead."""
        with self.db.transaction() as session:
            query = (select(Execution.id, and_(*_JOB_RUNS).label("runs"))
                     .join(Job, Job.id == Execution.job_pk)
                     .join(JobCollection, JobCollection.id == Job.collection_id)
                     .where(recorder.runnable(now))
                     .order_by(Execution.next_attempt_at).limit(limit or self.options.batch))
            if not self.db.is_sqlite:
                query = query.with_for_update(of=Execution, skip_locked=True)
            found = session.execute(query).all()
            recorder.cancel_executions(session, [row.id for row in found if not row.runs], now)
            ids = [row.id for row in found if row.runs]
            if not ids:
                return []
            dialect = session.get_bind().dialect.name
            leased = session.execute(
                update(EXECUTIONS).where(among(dialect, EXECUTIONS.c.id, ids)).values(
                    status=recorder.RUNNING, lease_owner=self.node_id,
                    lease_until=now + self.options.lease, node=self.node_id,
                    start_time=func.coalesce(EXECUTIONS.c.start_time, now))
                .returning(EXECUTIONS.c.id, EXECUTIONS.c.job_pk, EXECUTIONS.c.action_name,
                           EXECUTIONS.c.attempt, EXECUTIONS.c.repeat_count,
                           EXECUTIONS.c.scheduled_time, EXECUTIONS.c.parameters)).all()
            job_pks = {row.job_pk for row in leased}
            versions = {row.id: self._version(row) for row in session.execute(
                select(*_JOB_COLUMNS).join(JobCollection, JobCollection.id == Job.collection_id)
                .where(among(dialect, JOBS.c.id, job_pks)))}
            session.execute(update(JOBS).where(among(dialect, JOBS.c.id, job_pks))
                            .values(last_execution_time=now))
            return [Claimed(row.id, row.job_pk, row.action_name, row.attempt, row.repeat_count,
                            row.scheduled_time, json.loads(row.parameters or "{}"),
                            versions[row.job_pk])
                    for row in leased if row.job_pk in versions]

    def prepare(self, claimed: Claimed) -> ReadyAction | Outcome:
        """The attempt's action, made ready to go out at its time by its type's executor;
        an action that cannot run is its failed outcome already."""
        action = action_named(claimed.version.document, claimed.action_name) or {}
        return self.actions.prepare(action, claimed.context)

    async def attempt(self, claimed: Claimed, ready: ReadyAction | Outcome | None = None
                      ) -> recorder.AttemptRecord:
        """Make one attempt (with its action, if prepared ahead); `record` records it."""
        started = self.clock.now()
        if ready is None:
            ready = self.prepare(claimed)
        if isinstance(ready, Outcome):
            return self.attempt_record(claimed, ready, started)
        done = ready.submit(self.options.timeout)
        with contextlib.suppress(Exception):  # the outcome tells what went wrong
            await done
        return self.attempt_record(claimed, ready.outcome(done, self.options.timeout), started)

    def attempt_record(self, claimed: Claimed, outcome: Outcome, started: datetime,
                       ended: datetime | None = None) -> recorder.AttemptRecord:
        """A finished attempt, as `record` records it."""
        return recorder.AttemptRecord(
            claimed.execution_id, claimed.job_pk, self.node_id, claimed.action_name,
            claimed.attempt, claimed.repeat_count, claimed.scheduled_time,
            claimed.version.document, outcome, started, ended or self.clock.now())

    def record(self, finished: list[recorder.AttemptRecord]) -> None:
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

    def changed_jobs(self, etags: Mapping[int, str]) -> dict[int, JobVersion | None]:
        """Of these jobs, each with the etag its readied calls were made from, those that
        stopped (None: disabled, deleted, or in a collection suspended or being deleted) and
        those changed since (their version now)."""
        with self.db.snapshot() as session:
            dialect = session.get_bind().dialect.name
            running = dict(session.execute(
                select(Job.id, Job.etag).join(JobCollection, JobCollection.id == Job.collection_id)
                .where(among(dialect, JOBS.c.id, etags), *_JOB_RUNS)).all())
            changed = [pk for pk, etag in running.items() if etag != etags[pk]]
            rows = session.execute(
                select(*_JOB_COLUMNS).join(JobCollection, JobCollection.id == Job.collection_id)
                .where(among(dialect, JOBS.c.id, changed))).all() if changed else []
        found: dict[int, JobVersion | None] = {pk: None for pk in etags if pk not in running}
        found.update((row.id, self._version(row)) for row in rows)
        return found

    def cancel(self, execution_ids: list[str], now: datetime) -> None:
        """Close executions that will not run, their job having stopped."""
        with self.db.transaction() as session:
            recorder.cancel_executions(session, execution_ids, now)

    # --- the loop --------------------------------------------------------------------------

    def next_wakeup(self) -> datetime | None:
        """The earliest time anything needs this node: a job to ready (`lookahead` before
        it is due), an attempt to make, a lease to take over."""
        with self.db.snapshot() as session:
            job_time = session.scalar(select(func.min(Job.next_execution_time)).where(
                Job.state == JobState.ENABLED))
            attempt_time = session.scalar(select(func.min(Execution.next_attempt_at)).where(
                Execution.status == recorder.PENDING))
            lease_time = session.scalar(select(func.min(Execution.lease_until)).where(
                Execution.status == recorder.RUNNING))
        if job_time is not None:
            job_time -= self.options.lookahead
        times = [t for t in (job_time, attempt_time, lease_time) if t is not None]
        return min(times) if times else None

    def prune(self, now: datetime) -> int:
        """Apply history retention."""
        with self.db.transaction() as session:
            return recorder.prune_history(session, now, self.options.history_keep,
                                          self.options.history_max_age)

    def extend_leases(self, execution_ids: list[str], now: datetime) -> None:
        """Keep the executions whose calls are still running leased to this node."""
        with self.db.transaction() as session:
            session.execute(update(EXECUTIONS).where(
                among(session.get_bind().dialect.name, EXECUTIONS.c.id, execution_ids),
                EXECUTIONS.c.lease_owner == self.node_id,
                EXECUTIONS.c.status == recorder.RUNNING,
            ).values(lease_until=now + self.options.lease))

    async def run_forever(self, stop: asyncio.Event, wake: asyncio.Event | None = None
                          ) -> None:
        """Ready what falls due within `lookahead`, start attempts without waiting for
        earlier ones, record what finished, and sleep until the next thing is due (at most
        `max_sleep`), `wake`, or a finish.

        On `stop`, attempts in flight are finished and recorded before returning.
        """
        await _Loop(self, wake or asyncio.Event()).run(stop)


@dataclass(frozen=True, slots=True)
class _Readied:
    """A leased execution waiting for its scheduled time, its call made ready."""

    execution: Claimed
    call: ReadyAction | Outcome


@dataclass(frozen=True, slots=True)
class _Answered:
    """An action's done future as it came, to be read into the attempt's record when
    recorded."""

    execution: Claimed
    call: ReadyAction
    started: datetime
    ended: datetime
    answer: asyncio.Future[Any]


class _Loop:
    """The state of `Engine.run_forever`: attempts in flight, and those finished but not
    yet recorded."""

    def __init__(self, engine: Engine, wake: asyncio.Event) -> None:
        self.engine, self.wake = engine, wake
        # Leased executions waiting for their scheduled time, by execution id.
        self.waiting: dict[str, _Readied] = {}
        self.inflight: dict[asyncio.Future[Any], str] = {}
        self.finished: list[recorder.AttemptRecord | _Answered] = []
        self.record_timer: asyncio.TimerHandle | None = None
        self.more_due = False  # when the last pass ended, more was due at once
        now = engine.clock.now()
        self.last_prune = self.leases_renewed = now

    async def run(self, stop: asyncio.Event) -> None:
        engine = self.engine
        while not stop.is_set():
            self.wake.clear()  # a signal during the pass below makes for another pass at once
            now = engine.clock.now()
            try:
                await self.one_pass(now)
                if now - self.last_prune > timedelta(minutes=10):
                    await asyncio.to_thread(engine.prune, now)
                    self.last_prune = now
                wakeup = await asyncio.to_thread(engine.next_wakeup)
            except Exception:
                log.exception("engine pass failed; retrying")
                wakeup = None
            self.more_due = wakeup is not None and wakeup <= engine.clock.now()
            delay = engine.options.max_sleep
            if wakeup is not None:
                delay = min(delay, max(0.0, (wakeup - engine.clock.now()).total_seconds()))
            await _first_of(stop, self.wake, delay)
        while self.waiting:  # readied ahead: due within `lookahead`
            await asyncio.sleep(0.05)
        if self.inflight:
            await asyncio.wait(self.inflight)
        await asyncio.to_thread(engine.record, self.settled(self.finished))

    async def one_pass(self, now: datetime) -> None:
        """Ready and lease what is due, renew leases and claim retries; meanwhile, on another
        connection, record what finished. A tick never waits for a lock (SKIP LOCKED), so the
        two cannot deadlock; on SQLite they take turns at the write lock."""
        await asyncio.gather(self.make_and_claim(now), self.record_finished())

    async def make_and_claim(self, now: datetime) -> None:
        """Bring readied calls up to date with their jobs, tick, renew leases, claim retries
        and executions left over."""
        engine, options = self.engine, self.engine.options
        if self.waiting:
            await self.refresh_readied(now)
        # A whole tick's batch is leased, so no execution it makes waits for a claim; the
        # node takes no new batch while it holds its fill, leaving the jobs to other nodes.
        if len(self.inflight) + len(self.waiting) < options.concurrency:
            tick = await asyncio.to_thread(engine.tick, now, now + options.lookahead,
                                           options.batch)
            self.start(tick.claimed)
        if now - self.leases_renewed >= options.lease / 3:
            held = [*self.inflight.values(), *self.waiting]
            if held:
                await asyncio.to_thread(engine.extend_leases, held, now)
            self.leases_renewed = now
        room = options.concurrency - len(self.inflight) - len(self.waiting)
        if room > 0:
            self.start(await asyncio.to_thread(engine.claim_executions, now,
                                               min(room, options.batch)))

    async def refresh_readied(self, now: datetime) -> None:
        """Cancel readied calls whose job stopped while they waited, and make those of a job
        changed meanwhile again from its new version: an occurrence already made keeps its
        execution and its time, and goes out as its job is when it is due."""
        engine = self.engine
        etags: dict[int, str] = {}
        for readied in self.waiting.values():
            job_pk, etag = readied.execution.job_pk, readied.execution.version.etag
            if etags.setdefault(job_pk, etag) != etag:
                etags[job_pk] = ""  # readied from two versions: one of them is not current
        changed = await asyncio.to_thread(engine.changed_jobs, etags)
        if not changed:
            return
        dropped: list[str] = []
        # Those launched meanwhile are gone from `waiting`.
        for execution_id, readied in list(self.waiting.items()):
            if readied.execution.job_pk not in changed:
                continue
            version = changed[readied.execution.job_pk]
            if version is None:
                dropped.append(execution_id)
                del self.waiting[execution_id]
            elif version.etag != readied.execution.version.etag:
                execution = replace(readied.execution, version=version)
                self.waiting[execution_id] = _Readied(execution, engine.prepare(execution))
        if dropped:
            await asyncio.to_thread(engine.cancel, dropped, now)

    async def record_finished(self) -> None:
        """Record the attempts that finished, when it is time to."""
        if self.finished and self.time_to_record():
            if self.record_timer is not None:
                self.record_timer.cancel()
                self.record_timer = None
            batch = self.settled(self.finished)
            self.finished.clear()
            await asyncio.to_thread(self.engine.record, batch)

    def settled(self, finished: list[recorder.AttemptRecord | _Answered]
                ) -> list[recorder.AttemptRecord]:
        """The records of finished attempts, those of answers kept as they came made now."""
        return [item if isinstance(item, recorder.AttemptRecord) else self.read(item)
                for item in finished]

    def read(self, answered: _Answered) -> recorder.AttemptRecord:
        """The record of an attempt from its answer."""
        engine = self.engine
        outcome = answered.call.outcome(answered.answer, engine.options.timeout)
        return engine.attempt_record(answered.execution, outcome, answered.started,
                                     answered.ended)

    def time_to_record(self) -> bool:
        """Record once calls stop coming back, or a batch is full, or the oldest outcome has
        waited `RECORD_DELAY` (its timer has run): recording while many calls are still being
        made would compete with them for the interpreter."""
        return (not self.inflight or len(self.finished) >= self.engine.options.batch
                or self.record_timer is None)

    def start(self, claimed: list[Claimed]) -> None:
        """Start attempts at their scheduled time: those due now at once, the others with one
        timer per scheduled instant, their calls prepared while they wait."""
        now = self.engine.clock.now()
        later: dict[datetime, list[str]] = {}
        for execution in claimed:
            if execution.scheduled_time > now:
                later.setdefault(execution.scheduled_time, []).append(execution.execution_id)
                self.waiting[execution.execution_id] = _Readied(
                    execution, self.engine.prepare(execution))
            else:
                self.launch(execution)
        loop = asyncio.get_running_loop()
        now = self.engine.clock.now()  # preparing took time
        for moment, group in later.items():
            loop.call_later((moment - now).total_seconds(), self.launch_all, group)

    def launch_all(self, execution_ids: list[str]) -> None:
        """Start a group of readied attempts whose time has come."""
        for execution_id in execution_ids:
            readied = self.waiting.pop(execution_id, None)
            if readied is not None:  # else dropped, its job stopped
                self.launch(readied.execution, readied.call)

    def launch(self, execution: Claimed, call: ReadyAction | Outcome | None = None
               ) -> None:
        """Start one attempt now."""
        engine = self.engine
        if call is None:
            call = engine.prepare(execution)
        started = engine.clock.now()
        if isinstance(call, Outcome):  # known already: nothing to send
            self.keep(engine.attempt_record(execution, call, started, started))
            return
        # No task of the engine's: the done future's callback keeps the answer, and a task
        # per call would cost more than the rest of sending it.
        answered = call.submit(engine.options.timeout)
        self.inflight[answered] = execution.execution_id
        answered.add_done_callback(functools.partial(self.answered, execution, call, started))

    def answered(self, execution: Claimed, call: ReadyAction, started: datetime,
                 answered: asyncio.Future[Any]) -> None:
        """An action finished: its done future is kept as it came, and read when it is
        recorded, so that calls still waiting to go out are not kept waiting."""
        del self.inflight[answered]
        self.keep(_Answered(execution, call, started, self.engine.clock.now(), answered))

    def keep(self, record: recorder.AttemptRecord | _Answered) -> None:
        """Keep a finished attempt for the next recording; make for a pass once nothing is
        left in flight, or there is a batch to record while more jobs are due, or in
        `RECORD_DELAY` at the latest.

        Not a pass per finished call: a pass queries the database, and passes at the rate
        calls come back would compete with the calls still being made. A burst of calls due
        at one instant goes out before its outcomes are recorded, unless more are due."""
        self.finished.append(record)
        if not self.inflight or (self.more_due
                                 and len(self.finished) >= self.engine.options.batch):
            self.wake.set()
        elif self.record_timer is None:  # the first outcome waiting to be recorded
            self.record_timer = asyncio.get_running_loop().call_later(
                RECORD_DELAY.total_seconds(), self.record_due)

    def record_due(self) -> None:
        """The oldest unrecorded outcome has waited long enough."""
        self.record_timer = None
        self.wake.set()


def _execution_row(execution_id: str, job_pk: int, scheduled: datetime, repeat_count: int,
                   now: datetime, *, status: str, next_attempt_at: datetime | None = None,
                   lease_owner: str | None = None, lease_until: datetime | None = None,
                   node: str | None = None, start_time: datetime | None = None,
                   end_time: datetime | None = None) -> dict[str, Any]:
    """An executions row as a tick inserts it; every row has the same keys."""
    return {
        "id": execution_id, "job_pk": job_pk, "scheduled_time": scheduled,
        "trigger": "schedule", "status": status, "action_name": MAIN_ACTION, "attempt": 0,
        "repeat_count": repeat_count, "next_attempt_at": next_attempt_at,
        "lease_owner": lease_owner, "lease_until": lease_until, "node": node,
        "created_at": now, "start_time": start_time, "end_time": end_time,
    }


async def _first_of(stop: asyncio.Event, wake: asyncio.Event, timeout: float) -> None:
    """Sleep until either event is set or the timeout passes."""
    waiters = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(wake.wait())]
    _done, pending = await asyncio.wait(waiters, timeout=timeout,
                                        return_when=asyncio.FIRST_COMPLETED)
    for waiter in pending:
        waiter.cancel()
