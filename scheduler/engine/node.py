"""An engine node's work on the database: turn due occurrences into executions, lease them,
record what happened.

The database is the coordinator. A tick claims due jobs (rows locked with SKIP LOCKED on
PostgreSQL; SQLite has one writer at a time), inserts one execution per occurrence under a
unique (job, scheduled time) key and moves each job's next fire time on, in one transaction.
Executions are then leased, run by the node's loop (`loop.py`), and their outcome recorded
only by the node that still holds the lease.
"""

from __future__ import annotations

import collections
import functools
import json
import logging
from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from scheduler.actions.base import Outcome, ReadyAction
from scheduler.actions.registry import ActionRegistry
from scheduler.clock import Clock
from scheduler.db.alerts import DeliveryResult
from scheduler.db.session import Database
from scheduler.db.stored_channels import StoredChannelError, open_channel
from scheduler.db.stored_jobs import fire_time_from
from scheduler.domain.alerts import AlertRules
from scheduler.domain.calendars import ExclusionCalendar, first_excluding
from scheduler.domain.catch_up import Missed, catch_up
from scheduler.domain.durations import format_datetime
from scheduler.domain.executions import MAIN_ACTION, EventKind, StepRecord, waiting_step
from scheduler.domain.jobs import JobDefinition, Sequence
from scheduler.domain.nodes import node_name, runs_on, stored_run_on
from scheduler.domain.notifications import Channel
from scheduler.domain.occurrences import upcoming
from scheduler.domain.overlap import Fate, Open, Overlap, decide, skip_reason
from scheduler.domain.placeholders import PlaceholderError
from scheduler.domain.recurrence import Recurrence
from scheduler.domain.states import ExecutionStatus
from scheduler.engine import alerting, callbacks, recorder
from scheduler.engine.courier import Parcel
from scheduler.engine.deadman import PingReport
from scheduler.engine.leased import Claimed, Tick
from scheduler.engine.metrics import EngineMetrics
from scheduler.engine.options import EngineOptions
from scheduler.engine.store import (
    LEASE_EXPIRED,
    EngineStore,
    Glance,
    JobRow,
    LeasedExecution,
    NewRow,
    Transaction,
)
from scheduler.engine.versions import JobVersion, JobVersions, UnreadableJob
from scheduler.security.secrets import SecretBox
from scheduler.services import new_etag
from scheduler.services.audit import Target
from scheduler.services.jobs import SCHEDULER_ACTOR, record_reenabled, reenabled_note

log = logging.getLogger(__name__)

ONE_MICROSECOND = timedelta(microseconds=1)
# Executions not started this long after their time are looked at for `late` alerts: what
# a working cluster leases at once never is.
MIN_LATE = timedelta(seconds=1)


@dataclass
class _FirePlan:
    """What one tick does with one due job: fire it once (`fire`; None when every
    occurrence due is skipped), record the occurrences before as missed, and those a
    calendar excludes as skipped."""

    row: JobRow
    version: JobVersion
    fire: datetime | None
    missed: list[tuple[str, Missed]]  # the execution id, time and reason of each one missed
    execution_id: str
    leased: bool
    last: datetime  # the latest occurrence due: the job moves on from it
    # The execution id, time and excluding calendar of each one skipped.
    skipped: list[tuple[str, datetime, str]] = field(default_factory=list)
    # The execution id and time of each missed occurrence the job's catch-up runs too, before
    # `fire`: made pending, for any node to run.
    earlier: list[tuple[str, datetime]] = field(default_factory=list)
    # The missed occurrences past those recorded one by one: how many, the first, the last.
    beyond: tuple[int, datetime, datetime] | None = None
    # What the job's overlap policy makes of the runs (`runs`), by execution id, with the
    # open runs it cancels and the one in their way; none for a job that allows overlaps.
    fates: dict[str, Fate] = field(default_factory=dict)
    replaced: tuple[str, ...] = ()
    blocking: str | None = None

    @property
    def runs(self) -> list[tuple[str, datetime]]:
        """The execution id and time of each occurrence the tick runs, earliest first."""
        runs = list(self.earlier)
        if self.fire is not None:
            runs.append((self.execution_id, self.fire))
        return runs

    def fate(self, execution_id: str) -> Fate:
        """What the overlap policy makes of one of `runs`."""
        return self.fates.get(execution_id, Fate.RUN)

    def made(self, inserted: set[str]) -> int:
        """How many executions that run (or wait to) the tick made of the job."""
        if not self.fates:  # every one runs: the common case, counted without a list
            made = sum(execution_id in inserted for execution_id, _time in self.earlier)
            return made + (self.fire is not None and self.execution_id in inserted)
        return sum(execution_id in inserted and self.fate(execution_id) is not Fate.SKIP
                   for execution_id, _time in self.runs)


def _missed_by_job(plans: list[_FirePlan]
                   ) -> dict[int, tuple[AlertRules | None, int, datetime, datetime]]:
    """The jobs that missed occurrences in a tick: each with its own alert rules, how many
    it missed, the first and the last."""
    found: dict[int, tuple[AlertRules | None, int, datetime, datetime]] = {}
    for plan in plans:
        times = [item.time for _id, item in plan.missed]
        count = len(times)
        if plan.beyond is not None:  # past those recorded one by one
            count += plan.beyond[0]
            times.extend(plan.beyond[1:])
        if times:
            found[plan.row.id] = (plan.version.definition.alerts, count, min(times),
                                  max(times))
    return found


class TickCalendars:
    """The exclusion calendars one tick reads: each collection's once, on the tick's
    transaction, and only for jobs that name some."""

    def __init__(self, session: Transaction) -> None:
        self.session = session
        self._read: dict[int, dict[str, ExclusionCalendar]] = {}

    def excluding(self, collection_id: int, recurrence: Recurrence | None
                  ) -> Callable[[datetime], str | None] | None:
        """What says which calendar, if any, excludes an occurrence of a job of the
        collection; None when its recurrence names no calendar."""
        if recurrence is None or not recurrence.exclude_calendars:
            return None
        calendars = self._read.get(collection_id)
        if calendars is None:
            calendars = self._read[collection_id] = EngineStore.calendars(self.session,
                                                                          collection_id)
        names = recurrence.exclude_calendars
        return functools.partial(first_excluding, calendars, names)


@dataclass(frozen=True)
class _Fault:
    """An occurrence or execution of a job that cannot run, and why."""

    job: JobRow
    scheduled: datetime
    fault: UnreadableJob
    execution_id: str | None = None  # the execution failed with it, if one was made


class Engine:
    """One engine node's work on the database, each step a transaction or a read: what its
    loop (`FiringLoop`) calls, from a thread of its own."""

    def __init__(self, db: Database, box: SecretBox, clock: Clock, node_id: str,
                 actions: ActionRegistry, options: EngineOptions,
                 metrics: EngineMetrics | None = None) -> None:
        self.db, self.box, self.clock, self.node_id = db, box, clock, node_id
        # The name jobs' `runOn` lists; the lease and heartbeat rows carry the id.
        self.name = node_name(options.node_name or node_id)
        self.actions = actions
        self.options = options
        self.metrics = metrics or EngineMetrics()
        self.versions = JobVersions(box)
        self.store = EngineStore()
        # Alerts this node made since its courier last looked: it delivers them at once.
        self.alerts_made = 0

    # --- occurrences -> executions ---------------------------------------------------------

    def tick(self, now: datetime, horizon: datetime | None = None, lease: int = 0,
             surely_due: bool = False) -> Tick:
        """Create the executions of every occurrence due by `horizon` (default: `now`).

        Up to `lease` of the new executions are leased to this node at once and handed back,
        to be run at their scheduled time; the others wait, pending, for any node to claim.
        `surely_due`: the caller knows jobs are due (its last tick came back full), so the
        glance that keeps an idle tick from opening a write transaction is skipped.
        """
        if not surely_due and not self.glance().jobs_due(horizon or now):
            return Tick(0, [])
        began = self.clock.monotonic()
        tick = self._tick(now, horizon or now, lease)
        self.metrics.tick_seconds.observe(self.clock.monotonic() - began)
        return tick

    def _tick(self, now: datetime, horizon: datetime, lease: int) -> Tick:
        with self.db.transaction() as session:
            due = self.store.due_jobs(session, horizon, self.options.batch)
            plans, faults = self._plans(due, now, lease, TickCalendars(session))
            self._fault_jobs(session, faults, now)
            replaced = self._decide_overlaps(session, plans, now)
            rows = [row for plan in plans for row in self._execution_rows(plan, now)]
            inserted = self.store.insert_executions(session, rows)
            history: list[dict[str, Any]] = []
            moves: list[dict[str, Any]] = []
            events: list[NewRow] = []
            claimed: list[Claimed] = []
            made = 0  # occurrences made into executions (not already made by another node)
            # What every execution leased by this tick says of its lease, encoded once.
            leased = self.store.encoded_detail(_leased_detail(MAIN_ACTION, 0, None,
                                                              now + self.options.lease))
            for plan in plans:
                fired = plan.execution_id in inserted
                runs = plan.made(inserted)
                made += runs
                history.extend(self._missed_history(plan, inserted, now))
                moves.append(self._move_on(plan, fired, runs))
                events.extend(self._first_events(plan, inserted, now, leased))
                if (fired and plan.leased and not plan.version.definition.starts_waiting
                        and plan.fate(plan.execution_id) is Fate.RUN):
                    assert plan.fire is not None  # made: it has a time
                    claimed.append(Claimed(plan.execution_id, plan.row.id, MAIN_ACTION, 0,
                                           plan.row.execution_count, plan.fire, {},
                                           plan.version))
            claimed = self._arm_callbacks(session, claimed)
            self.store.move_jobs_on(session, moves)
            self.store.insert_history(session, history)
            self.store.insert_first_events(session, events)
            # A summary row of the occurrences past those recorded one by one stands for many.
            missed = sum(entry["status"] == ExecutionStatus.MISSED for entry in history) + \
                sum(plan.beyond[0] - 1 for plan in plans if plan.beyond is not None)
            skipped = sum(entry["status"] == ExecutionStatus.SKIPPED for entry in history)
            if missed:  # the next ping to the monitor reports them (`take_ping`)
                self.store.count_missed(session, missed)
                self._made_alerts(alerting.alerts_of_missed(session, _missed_by_job(plans),
                                                            now))
        self.metrics.fired.inc(made)
        self.metrics.missed.inc(missed)
        self.metrics.skipped.inc(skipped)
        return Tick(len(plans), claimed, made, replaced)

    def _decide_overlaps(self, session: Transaction, plans: list[_FirePlan], now: datetime
                         ) -> list[str]:
        """Decide, for the jobs whose overlap policy is not `allow`, what becomes of the runs
        the tick makes while others of theirs are open (their rows are locked by the tick, so
        that one decision is made per occurrence); cancel the runs a `replace` replaces.
        Returns those canceled."""
        ruled = [plan for plan in plans
                 if plan.version.definition.concurrency_policy is not Overlap.ALLOW
                 and plan.runs]
        if not ruled:
            return []
        found = self.store.open_runs(session, [plan.row.id for plan in ruled])
        replaced: list[str] = []
        for plan in ruled:
            open_runs = found.get(plan.row.id, Open())
            runs = plan.runs
            decision = decide(plan.version.definition.concurrency_policy, open_runs,
                              [moment for _id, moment in runs], now)
            plan.fates = {execution_id: fate
                          for (execution_id, _time), fate in zip(runs, decision.fates,
                                                                 strict=True)}
            plan.replaced = decision.cancel
            plan.blocking = next(iter((*open_runs.active, *open_runs.waiting)), None)
            replaced.extend(decision.cancel)
        if replaced:
            self.store.cancel_replaced(session, replaced, now, self.node_id)
        return replaced

    def _plans(self, due: list[JobRow], now: datetime, lease: int, calendars: TickCalendars
               ) -> tuple[list[_FirePlan], list[_Fault]]:
        """What the tick does with each due job, the first `lease` leased; and the jobs
        whose stored version cannot run, which the tick faults instead."""
        plans: list[_FirePlan] = []
        faults: list[_Fault] = []
        for index, row in enumerate(due):
            due_at = row.next_execution_time
            assert due_at is not None  # a job due has its next fire time
            try:
                plans.append(self._plan(row, due_at, now, index < lease, calendars))
            except UnreadableJob as fault:
                faults.append(_Fault(row, due_at, fault))
        return plans, faults

    def _fault_jobs(self, session: Transaction, faults: list[_Fault], now: datetime) -> None:
        """Park jobs whose stored version cannot run as faulted, the reason in their state
        details and a failed attempt in their history: they fire no more, and no pass reads
        them again, until they are changed or enabled again. The other jobs go on."""
        if not faults:
            return
        for found in faults:
            job = found.job
            log.warning("job %s of collection %s cannot run and is faulted: %s", job.job_id,
                        job.name, found.fault.reason,
                        extra={"job_id": job.job_id, "collection": job.name})
            self.metrics.unrunnable.labels(found.fault.kind).inc()
        self.store.insert_history(session, [recorder.unrunnable_history(
            found.job.id, found.job.execution_count, found.scheduled, now, found.fault.reason,
            found.execution_id)
            for found in faults])
        self.store.fault_jobs(session, {found.job.id: f"Cannot run: {found.fault.reason}"
                                        for found in faults})
        self._made_alerts(alerting.alerts_of_faults(
            session, [(found.job.id, found.scheduled, found.fault.reason) for found in faults],
            now))

    def _plan(self, row: JobRow, due_at: datetime, now: datetime, leased: bool,
              calendars: TickCalendars) -> _FirePlan:
        """What a tick makes of a job due at `due_at`: the occurrences due by `now` that its
        calendars exclude are skipped; of the others, those its catch-up runs are fired (the
        latest leased to this node if `leased` and the job may run here, the earlier ones left
        pending for any node it may run on) and the rest are missed."""
        version = self.versions.get(row)
        # A job that names other nodes is left pending, for one of them to claim.
        leased = leased and runs_on(version.definition.run_on, self.name)
        times = upcoming(version.recurrence, version.start, row.created_at, due_at,
                         row.execution_count, row.job_id)
        due, beyond = _latest_due(times, now, due_at)
        new_id = self.store.new_execution_id
        excluding = calendars.excluding(row.collection_id, version.recurrence)
        skipped: list[tuple[str, datetime, str]] = []
        runnable = due
        if excluding is not None:
            runnable = []
            for moment in due:
                calendar = excluding(moment)
                if calendar is None:
                    runnable.append(moment)
                else:
                    skipped.append((new_id(), moment, calendar))
        runs, missed = catch_up(version.definition.catch_up, runnable, now)
        return _FirePlan(row, version, runs[-1] if runs else None,
                         [(new_id(), item) for item in missed], new_id(), leased, due[-1],
                         skipped, [(new_id(), moment) for moment in runs[:-1]], beyond)

    def _execution_rows(self, plan: _FirePlan, now: datetime) -> list[dict[str, Any]]:
        row = plan.row
        job_pk, collection_id, count = row.id, row.collection_id, row.execution_count
        execution_row = functools.partial(
            self.store.execution_row, run_on=stored_run_on(plan.version.definition.run_on))
        rows = [execution_row(execution_id, job_pk, collection_id, item.time, count, now,
                                         status=ExecutionStatus.MISSED, end_time=now)
                for execution_id, item in plan.missed]
        rows.extend(execution_row(execution_id, job_pk, collection_id, t, count, now,
                                  status=ExecutionStatus.SKIPPED, end_time=now)
                    for execution_id, t, _calendar in plan.skipped)
        for execution_id, moment in plan.runs:
            fate = plan.fate(execution_id)
            if fate is Fate.RUN:
                rows.append(self._run_row(plan, execution_id, moment, now, execution_row))
            elif fate is Fate.SKIP:
                rows.append(execution_row(execution_id, job_pk, collection_id, moment, count,
                                          now, status=ExecutionStatus.SKIPPED, end_time=now,
                                          message=_overlap_skip(plan, moment)))
            else:  # waits behind the open run; until its time, for `skip`
                rows.append(execution_row(
                    execution_id, job_pk, collection_id, moment, count, now,
                    status=ExecutionStatus.WAITING,
                    next_attempt_at=moment if fate is Fate.WAIT_UNTIL_DUE else None,
                    steps=_manual_first(plan.version.definition)))
        return rows

    def _run_row(self, plan: _FirePlan, execution_id: str, moment: datetime, now: datetime,
                 execution_row: Callable[..., dict[str, Any]]) -> dict[str, Any]:
        """The row (made by `execution_row`) of an execution the tick runs: an earlier one
        caught up, pending for any node; the latest paused (its first step is manual),
        leased to this node, or pending."""
        row, definition = plan.row, plan.version.definition
        job_pk, collection_id, count = row.id, row.collection_id, row.execution_count
        if execution_id != plan.execution_id:
            return execution_row(execution_id, job_pk, collection_id, moment, count, now,
                                 status=ExecutionStatus.PENDING, next_attempt_at=moment)
        if definition.starts_waiting:  # its first step waits for `resume`
            assert isinstance(definition.action, Sequence)
            return execution_row(
                execution_id, job_pk, collection_id, moment, count, now,
                status=ExecutionStatus.PAUSED,
                steps=[waiting_step(definition.action.steps[0].name)])
        if plan.leased:
            return execution_row(
                execution_id, job_pk, collection_id, moment, count, now,
                status=ExecutionStatus.RUNNING, lease_owner=self.node_id,
                lease_until=now + self.options.lease, node=self.node_id,
                start_time=max(now, moment))
        return execution_row(execution_id, job_pk, collection_id, moment, count, now,
                             status=ExecutionStatus.PENDING, next_attempt_at=moment)

    @staticmethod
    def _missed_history(plan: _FirePlan, inserted: set[str], now: datetime
                        ) -> list[dict[str, Any]]:
        """The history of the occurrences a tick recorded missed or skipped."""
        row = plan.row
        history = [recorder.missed_history(row.id, row.state, row.execution_count, item.time,
                                           item.reason, now, execution_id)
                   for execution_id, item in plan.missed if execution_id in inserted]
        if plan.beyond is not None:
            history.append(recorder.missed_beyond_history(row.id, row.state,
                                                          row.execution_count, *plan.beyond,
                                                          now))
        history.extend(EngineStore.skipped_history(
            row.id, row.state, row.execution_count, scheduled, now, execution_id,
            _calendar_skip(scheduled, calendar))
            for execution_id, scheduled, calendar in plan.skipped if execution_id in inserted)
        if plan.fates:
            history.extend(EngineStore.skipped_history(
                row.id, row.state, row.execution_count, scheduled, now, execution_id,
                f"the occurrence due at {scheduled.isoformat()} was not run: "
                f"{_overlap_skip(plan, scheduled)}")
                for execution_id, scheduled in plan.runs
                if plan.fate(execution_id) is Fate.SKIP and execution_id in inserted)
        return history

    def _first_events(self, plan: _FirePlan, inserted: set[str], now: datetime, leased: str
                      ) -> list[NewRow]:
        """The events of the executions a tick made of one job: each `scheduled`, then the
        missed ones `missed`, and the one fired `paused` (its first step is manual) or
        `leased` (to this node, at once, `leased` its detail)."""
        event, node = self.store.event_row, self.node_id
        events: list[NewRow] = []
        fired_for = None if plan.fire is None else format_datetime(plan.fire)
        for execution_id, item in plan.missed:
            if execution_id in inserted:
                events.append(event(execution_id, now, EventKind.SCHEDULED, node=node,
                                    detail=_scheduled_detail(item.time)))
                events.append(event(execution_id, now, EventKind.MISSED, node=node,
                                    detail={"fired_for": fired_for, "reason": item.reason}))
        for execution_id, scheduled in plan.earlier:
            if execution_id in inserted:
                events.append(event(execution_id, now, EventKind.SCHEDULED, node=node,
                                    detail={"trigger": "schedule", "catch_up": "all",
                                            "scheduled_time": format_datetime(scheduled)}))
                events.extend(_overlap_events(plan, execution_id, scheduled, now, node))
        for execution_id, scheduled, calendar in plan.skipped:
            if execution_id in inserted:
                events.append(event(execution_id, now, EventKind.SCHEDULED, node=node,
                                    detail=_scheduled_detail(scheduled)))
                events.append(event(execution_id, now, EventKind.SKIPPED, node=node,
                                    detail={"reason": "calendar", "calendar": calendar}))
        execution_id = plan.execution_id
        if execution_id not in inserted or plan.fire is None:
            return events
        events.append(event(execution_id, now, EventKind.SCHEDULED, node=node,
                            detail=_scheduled_detail(plan.fire)))
        if plan.fate(execution_id) is not Fate.RUN:
            events.extend(_overlap_events(plan, execution_id, plan.fire, now, node))
            return events
        definition = plan.version.definition
        if definition.starts_waiting:
            assert isinstance(definition.action, Sequence)
            events.append(event(execution_id, now, EventKind.PAUSED, node=node,
                                detail={"step": 0, "name": definition.action.steps[0].name,
                                        "reason": "manual"}))
        elif plan.leased:
            events.append(event(execution_id, now, EventKind.LEASED, node=node, attempt=1,
                                detail=leased))
        return events

    def _move_on(self, plan: _FirePlan, fired: bool, made: int) -> dict[str, Any]:
        """The job's counters and next fire time once the tick made `made` executions of
        it that run (`fired`: its latest occurrence among them)."""
        row, version = plan.row, plan.version
        count = row.execution_count + made
        later = upcoming(version.recurrence, version.start, row.created_at,
                         plan.last + ONE_MICROSECOND, count, row.job_id)
        return {"id": row.id, "next_execution_time": next(later, None), "execution_count": count,
                "last_execution_time": plan.fire if fired else row.last_execution_time}

    # --- executions -> attempts ------------------------------------------------------------

    def claim_executions(self, now: datetime, limit: int | None = None) -> list[Claimed]:
        """Lease runnable executions to this node: retries, error actions, those a tick left
        pending, and those whose node's lease ran out. Those whose job stopped (disabled,
        its collection suspended or being deleted) are canceled instead."""
        store = self.store
        glance = self.glance()
        if not glance.runnable(now):
            return []
        with self.db.transaction() as session:
            if glance.waiting_time is not None and glance.waiting_time <= now:
                store.release_waiting(session, now)
                self.metrics.skipped.inc(store.skip_overdue(session, now, self.node_id))
            found = store.runnable_executions(session, now, limit or self.options.batch,
                                              self.name)
            store.cancel_executions(session, [row.id for row in found if not row.runs], now,
                                    self.node_id)
            ids = [row.id for row in found if row.runs]
            if not ids:
                return []
            until = now + self.options.lease
            leased = store.lease_executions(session, ids, self.node_id, until, now)
            expired = {row.id: row.expired_on for row in found
                       if row.runs and row.expired_on is not None}
            store.insert_events(session, self._lease_events(leased, expired, now, until))
            job_pks = {row.job_pk for row in leased if row.job_pk is not None}
            versions, unreadable = self._versions(session, leased, job_pks)
            self._fail_unreadable(session, leased, unreadable, now)
            store.mark_jobs_run(session, job_pks, now)
            return self._arm_callbacks(session, [
                self._claimed(row, versions) for row in leased
                if (row.job_pk if row.job_pk is not None else row.id) in versions])

    def _arm_callbacks(self, session: Transaction, claimed: list[Claimed]) -> list[Claimed]:
        """Give each leased execution whose call waits for its target's callback a new
        callback URL, and keep its token's hash in the transaction that leased it."""
        armed, hashes = callbacks.arm(claimed, self.options.public_url)
        self.store.arm_callbacks(session, hashes)
        return armed

    def _lease_events(self, leased: list[LeasedExecution], expired: Mapping[str, str],
                      now: datetime, until: datetime) -> list[NewRow]:
        """The events of executions a claim leased to this node: `leased`, after
        `taken_over` for those whose node's lease on them had run out."""
        event, node = self.store.event_row, self.node_id
        events: list[NewRow] = []
        for row in leased:
            if row.id in expired:
                events.append(event(row.id, now, EventKind.TAKEN_OVER, node=node,
                                    detail={"from": expired[row.id], "by": node,
                                            "reason": LEASE_EXPIRED}))
            events.append(event(row.id, now, EventKind.LEASED, node=node,
                                attempt=row.attempts + 1,
                                detail=_leased_detail(row.action_name, row.attempt, row.step,
                                                      until)))
        return events

    def _versions(self, session: Transaction, leased: list[LeasedExecution], job_pks: set[int]
                  ) -> tuple[dict[Any, JobVersion], dict[Any, tuple[JobRow | None,
                                                                    UnreadableJob]]]:
        """What leased executions run: their job's version, or an inline run's own
        definition, by job id or (inline) execution id; and, by the same key, those that
        cannot be read, each with its job row (None inline) and why."""
        versions: dict[Any, JobVersion] = {}
        unreadable: dict[Any, tuple[JobRow | None, UnreadableJob]] = {}
        for job in self.store.jobs(session, job_pks):
            try:
                versions[job.id] = self.versions.get(job)
            except UnreadableJob as fault:
                unreadable[job.id] = (job, fault)
        inline = [row for row in leased if row.job_pk is None]
        if inline:
            places = self.store.collection_places(session,
                                                  {row.collection_id for row in inline})
            for row in inline:
                try:
                    versions[row.id] = self.versions.inline(row, *places[row.collection_id])
                except UnreadableJob as fault:
                    unreadable[row.id] = (None, fault)
        return versions, unreadable

    def _fail_unreadable(self, session: Transaction, leased: list[LeasedExecution],
                         unreadable: Mapping[Any, tuple[JobRow | None, UnreadableJob]],
                         now: datetime) -> None:
        """End the leased executions whose job or inline definition cannot be read as
        failed, saying why, and fault their jobs."""
        if not unreadable:
            return
        faults: list[_Fault] = []
        for row in leased:
            key = row.job_pk if row.job_pk is not None else row.id
            if key not in unreadable:
                continue
            job, fault = unreadable[key]
            self.store.fail_executions(session, [row.id], now, f"Cannot run: {fault.reason}",
                                       self.node_id)
            if job is not None:
                faults.append(_Fault(job, row.scheduled_time, fault, row.id))
            else:
                log.warning("an inline run of collection %s cannot run: %s", row.collection_id,
                            fault.reason, extra={"execution_id": row.id})
                self.metrics.unrunnable.labels(fault.kind).inc()
        self._fault_jobs(session, faults, now)

    @staticmethod
    def _claimed(row: LeasedExecution, versions: Mapping[Any, JobVersion]) -> Claimed:
        """A leased execution, with the job version (or inline definition) it runs."""
        version = versions[row.job_pk if row.job_pk is not None else row.id]
        steps = tuple(json.loads(row.steps)) if row.steps else ()
        return Claimed(row.id, row.job_pk, row.action_name, row.attempt, row.repeat_count,
                       row.scheduled_time, row.run_parameters(), version, row.revision,
                       row.step, steps, row.attempts, row.trigger,
                       callback_deadline=row.callback_deadline,
                       callback_result=row.callback_result)

    def prepare(self, claimed: Claimed) -> ReadyAction | Outcome:
        """The attempt's action, made ready to go out at its time by its type's executor;
        an action that cannot run is its failed outcome already."""
        stage = claimed.stage
        if stage is None:
            return Outcome(False, f"the job has no {claimed.action_name}")
        ended = callbacks.ended_outcome(claimed)
        if ended is not None:  # it waited for its callback: no call is made again
            return ended
        try:
            return self.actions.prepare(stage.action, claimed.context)
        except PlaceholderError as exc:
            # A placeholder with no value or in a place it may not stand: sending it as
            # written would give the target a request that means something else.
            version = claimed.version
            log.warning("job %s of collection %s: %s", version.job_id, version.collection, exc,
                        extra={"job_id": version.job_id, "collection": version.collection,
                               "execution_id": claimed.execution_id})
            self.metrics.unrunnable.labels("placeholder").inc()
            return Outcome(False, str(exc))
        except Exception as exc:
            # One job's call that cannot be made fails that attempt, not the pass that
            # readies the others. The error's text may hold a secret: the log has it.
            version = claimed.version
            log.exception("the call of job %s of collection %s could not be prepared",
                          version.job_id, version.collection,
                          extra={"job_id": version.job_id, "collection": version.collection,
                                 "execution_id": claimed.execution_id})
            self.metrics.unrunnable.labels("action").inc()
            return Outcome(False, f"The call could not be prepared ({type(exc).__name__}); "
                                  "the engine's log says more.")

    def finished(self, claimed: Claimed, outcome: Outcome, started: datetime, ended: datetime
                 ) -> recorder.AttemptRecord:
        """A claimed execution's attempt that ran from `started` to `ended` and came to
        `outcome`, as `record` takes it: for a caller that makes attempts its own way (the
        benchmarks time the stages of a pass apart)."""
        return recorder.attempt_record(claimed, outcome, self.node_id, started, ended)

    def record(self, finished: list[recorder.AttemptRecord]) -> None:
        """Record finished attempts, many to a transaction."""
        if not finished:
            return
        began = self.clock.monotonic()
        with self.db.transaction() as session:
            self._record(session, finished)
        self.metrics.recording_seconds.observe(self.clock.monotonic() - began)
        # A call its target accepted counts once its outcome comes.
        self.metrics.count_attempts([r for r in finished if not callbacks.is_accepted(r)])

    def _record(self, session: Transaction, finished: list[recorder.AttemptRecord]) -> None:
        """Store attempts' outcomes and what comes next for each, in a few statements
        whatever the batch's size: those whose lease their node no longer holds (taken
        over, canceled) are dropped."""
        store = self.store
        held = store.still_leased(session, [(r.execution_id, r.node) for r in finished])
        records = [r for r in finished if r.execution_id in held]
        if any(r.callback is not None for r in records):
            records = self._record_callbacks(session, records)
        if records:
            jobs = store.job_standings(session, {r.job_pk for r in records
                                                 if r.job_pk is not None})
            outcomes = recorder.outcomes(records, jobs)
            store.record_outcomes(session, outcomes)
            self._made_alerts(alerting.alerts_of_attempts(session, records, outcomes,
                                                          self.clock.now()))

    def _record_callbacks(self, session: Transaction, records: list[recorder.AttemptRecord]
                          ) -> list[recorder.AttemptRecord]:
        """Record the calls whose targets accepted them (202) as waiting for their callbacks;
        the other attempts that made or ended such a wait have their callbacks forgotten
        (their URLs are dead). Returns the attempts whose outcome is to be recorded."""
        accepted = [r for r in records if callbacks.is_accepted(r)]
        self.store.await_callbacks(session, [callbacks.accepted_row(r) for r in accepted])
        self.store.insert_events(session, [callbacks.accepted_event(r) for r in accepted])
        decided = [r for r in records if not callbacks.is_accepted(r)]
        self.store.clear_callbacks(session, [r.execution_id for r in decided
                                             if r.callback is not None])
        return decided

    def changed_jobs(self, etags: Mapping[int, str]) -> dict[int, JobVersion | None]:
        """Of these jobs, each with the etag its readied calls were made from, those that
        stopped (None: disabled, deleted, or in a collection suspended or being deleted) and
        those changed since (their version now)."""
        with self.db.snapshot() as session:
            running = self.store.running_etags(session, etags)
            changed = [pk for pk, etag in running.items() if etag != etags[pk]]
            rows = self.store.jobs(session, changed) if changed else []
        found: dict[int, JobVersion | None] = {pk: None for pk in etags if pk not in running}
        for row in rows:
            try:
                found[row.id] = self.versions.get(row)
            except UnreadableJob:  # its calls are dropped; its next tick faults it
                found[row.id] = None
        return found

    def cancel(self, execution_ids: list[str], now: datetime) -> None:
        """Close executions that will not run, their job having stopped."""
        with self.db.transaction() as session:
            self.store.cancel_executions(session, execution_ids, now, self.node_id)

    # --- the node's life ------------------------------------------------------------------

    def glance(self) -> Glance:
        """When the next job falls due and the next execution becomes runnable."""
        with self.db.reader() as conn:
            return self.store.glance(conn, self.name)

    # --- alerts -------------------------------------------------------------------------

    def take_alerts(self, now: datetime, until: datetime, limit: int) -> list[Parcel]:
        """Lease the alerts due for delivery to this node until `until`, each with its
        channels opened (or why one cannot be used)."""
        with self.db.transaction() as session:
            due = self.store.take_due_alerts(session, now, self.node_id, until, limit)
            conn = session.connection()
            parcels = []
            for alert in due:
                names = json.loads(alert.channels)
                stored = self.store.alert_channels(conn, alert.collection_id, names)
                parcels.append(Parcel(alert, {key: self._open_channel(row)
                                              for key, row in stored.items()}))
        return parcels

    def _open_channel(self, row: Any) -> Channel | str:
        """A stored channel opened with this home's keys, or why it cannot be."""
        try:
            return open_channel(row.name, row.document, row.secrets, self.box)
        except StoredChannelError as exc:
            return f"the channel {row.name} cannot be used: {exc}"

    def alert_unstarted(self, now: datetime, limit: int) -> int:
        """Make the `late` alerts of executions no attempt has started `lateBy` after their
        time (those of jobs whose rules ask for them); returns how many were made. A read
        that finds none, as a working cluster's does, opens no write transaction."""
        with self.db.reader() as conn:
            found = self.store.unstarted_executions(conn, now - MIN_LATE, limit)
        if not found:
            return 0
        with self.db.transaction() as session:
            rows = self.store.jobs(session, {run.job_pk for run in found})
            own: dict[int, AlertRules | None] = {}
            for row in rows:
                try:
                    own[row.id] = self.versions.get(row).definition.alerts
                except UnreadableJob:  # its next tick faults it
                    continue
            made = alerting.alerts_of_unstarted(session, found, own, now)
        self._made_alerts(made)
        return made

    def finish_alerts(self, results: list[DeliveryResult]) -> None:
        """Store what this node's tries of alerts came to."""
        with self.db.transaction() as session:
            self.store.finish_alert_tries(session, self.node_id, results)

    def next_alert_time(self) -> datetime | None:
        """When the next alert is due for delivery (None: none is)."""
        with self.db.reader() as conn:
            return self.store.next_alert_time(conn)

    def _made_alerts(self, made: int) -> None:
        """Count alerts made here: the courier delivers them at once."""
        if made:
            self.alerts_made += made
            self.metrics.alerts_made.inc(made)

    def next_wakeup(self) -> datetime | None:
        """The earliest time anything needs this node: a job to ready (`lookahead` before
        it is due), an attempt to make, a lease to take over."""
        return self.glance().wakeup(self.options.lookahead)

    def prune(self, now: datetime) -> int:
        """Apply history retention."""
        with self.db.transaction() as session:
            return self.store.prune_history(session, now, self.options.history_keep,
                                          self.options.history_max_age) + \
                self.store.prune_alerts(session, now - self.options.history_max_age)

    def heartbeat(self, now: datetime, unsent: Collection[str] = (), starting: bool = False,
                  judging: bool = True) -> int:
        """Say this node is alive, with the attempts it could not make in the last minute,
        and hand back for any node to take at once the executions of nodes that stopped
        saying so, and `unsent` (those held here whose calls were not sent). `starting`: also
        those of nodes that are gone without a trace (every other node's, with `sole`). Not
        `judging` (the database was away a moment ago), no other node is taken for dead.
        Returns how many were handed back."""
        options = self.options
        # The heartbeat row carries them to `/readyz`, which API nodes serve.
        unrunnable = self.metrics.recent_unrunnable.read(now)
        with self.db.transaction() as session:
            if starting:
                taken_over, handed_back = self.store.take_over(
                    session, self.node_id, now, now - options.dead_after, options.sole,
                    unrunnable, self.name), 0
            else:
                taken_over, handed_back = self.store.heartbeat(
                    session, self.node_id, now, now - options.dead_after if judging else None,
                    unsent, unrunnable, self.name)
            waiting = self.store.waiting_for_nodes(session, now - options.dead_after)
            pending = self.store.callbacks_pending(session)
        self.metrics.takeovers.inc(taken_over)
        self.metrics.waiting_for_nodes.set(waiting.executions)
        self.metrics.callbacks_pending.set(pending)
        return taken_over + handed_back

    def take_ping(self, now: datetime, interval: timedelta) -> PingReport | None:
        """Take the cluster's ping to its monitor if none was taken in the last `interval`
        (by any node): what it reports, or None when it is not this node's to send."""
        due_before = now - interval
        with self.db.reader() as conn:
            if not self.store.ping_due(conn, due_before):
                return None
        with self.db.transaction() as session:
            missed = self.store.take_ping(session, now, due_before)
            if missed is None:
                return None
            earliest_due = self.store.glance(session.connection(), self.name).job_time
        return PingReport(now, missed, earliest_due)

    def leave(self) -> None:
        """This node stops: its heartbeat goes with it."""
        with self.db.transaction() as session:
            self.store.leave(session, self.node_id)

    def extend_leases(self, execution_ids: list[str], now: datetime) -> set[str]:
        """Keep the executions whose calls are still running leased to this node; returns
        those it no longer holds (canceled, or taken over), whose calls are to be dropped."""
        with self.db.transaction() as session:
            kept = self.store.extend_leases(session, execution_ids, self.node_id,
                                            now + self.options.lease)
        return set(execution_ids) - kept

    def not_held(self, execution_ids: list[str]) -> set[str]:
        """Of these executions, those this node no longer holds: canceled, or taken over."""
        with self.db.snapshot() as session:
            return self.store.not_held(session, execution_ids, self.node_id)

    def held(self, readied: int, inflight: int) -> None:
        """Count the calls the node holds: readied for their instant, and in flight."""
        self.metrics.held(readied, inflight)

    def enable_paused_jobs(self, now: datetime) -> int:
        """Enable the disabled jobs whose time to wait (`disabled_until`) came by `now`, up
        to a batch, each exactly once across nodes: it fires next at its first occurrence
        from now on (those it skipped are neither replayed nor recorded missed), its state
        is stamped by the scheduler with a note saying why, and the change is in the audit.
        Returns how many this node enabled."""
        enabled = 0
        with self.db.transaction() as session:
            for job in self.store.paused_jobs_due(session, now, self.options.batch):
                note = reenabled_note(job.disabled_until)
                next_time = fire_time_from(job.definition, job.created_at, job.execution_count,
                                           now, job.next_execution_time, job.job_id)
                if not self.store.enable_paused_job(session, job, now, next_time, note,
                                                    SCHEDULER_ACTOR, new_etag()):
                    continue  # another node enabled it, or a write changed it meanwhile
                record_reenabled(session, self.box, now, job.subscription_id,
                                 Target(job.cloud_service, job.collection, job.job_id), note)
                enabled += 1
        if enabled:
            log.info("enabled %d jobs whose time to stay disabled came", enabled)
        return enabled


def _latest_due(times: Iterator[datetime], now: datetime, due_at: datetime
                ) -> tuple[list[datetime], tuple[int, datetime, datetime] | None]:
    """The latest occurrences due by `now` (at least `due_at`), at most
    MAX_MISSED_ONE_BY_ONE + 1 of them; and, when more were due, how many more, the first and
    the last of those, never held in memory all at once."""
    kept: collections.deque[datetime] = collections.deque(
        maxlen=recorder.MAX_MISSED_ONE_BY_ONE + 1)
    dropped, first, last = 0, None, None
    for moment in times:
        if moment > now:
            break
        if len(kept) == kept.maxlen:
            dropped += 1
            first = first or kept[0]
            last = kept[0]
        kept.append(moment)
    if not kept:
        return [due_at], None
    if first is None or last is None:
        return list(kept), None
    return list(kept), (dropped, first, last)


def _manual_first(definition: JobDefinition) -> list[StepRecord] | None:
    """The step records a run waiting behind another starts with: its manual first step,
    waiting for `resume` once the run is let go (see `release_waiting`); None without one."""
    if not definition.starts_waiting:
        return None
    assert isinstance(definition.action, Sequence)
    return [waiting_step(definition.action.steps[0].name)]


def _calendar_skip(scheduled: datetime, calendar: str) -> str:
    """What the history says of an occurrence a calendar excludes."""
    return (f"the occurrence due at {scheduled.isoformat()} falls on a day the calendar "
            f"{calendar} excludes")


def _overlap_skip(plan: _FirePlan, scheduled: datetime) -> str:
    """Why the job's overlap policy skips its run due at `scheduled`."""
    del scheduled  # the history and the event say which
    return skip_reason(plan.version.definition.concurrency_policy, plan.blocking)


def _overlap_events(plan: _FirePlan, execution_id: str, scheduled: datetime, now: datetime,
                    node: str) -> list[NewRow]:
    """The event of a run the job's overlap policy did not run at once: `skipped`, or
    `waiting` behind the open run (until its time, for `skip`)."""
    fate = plan.fate(execution_id)
    policy = plan.version.definition.concurrency_policy.value
    if fate is Fate.RUN:
        return []
    if fate is Fate.SKIP:
        return [EngineStore.event_row(execution_id, now, EventKind.SKIPPED, node=node, detail={
            "reason": "overlap", "policy": policy, "behind": plan.blocking,
            "message": _overlap_skip(plan, scheduled)})]
    detail: dict[str, Any] = {"policy": policy, "behind": plan.blocking}
    if fate is Fate.WAIT_UNTIL_DUE:
        detail["until"] = format_datetime(scheduled)
    return [EngineStore.event_row(execution_id, now, EventKind.WAITING, node=node,
                                  detail=detail)]


def _scheduled_detail(scheduled: datetime) -> str:
    """What a `scheduled` event of an occurrence says, its trigger and time, encoded: written
    out, as the tick makes one per execution (an ISO time holds nothing JSON escapes)."""
    return f'{{"trigger":"schedule","scheduled_time":"{format_datetime(scheduled)}"}}'


def _leased_detail(action_name: str, retry: int, step: int | None, until: datetime
                   ) -> dict[str, Any]:
    """What a `leased` event says: the action (and step) the attempt runs, which retry of it
    it is, and until when the lease holds unless renewed."""
    detail: dict[str, Any] = {"action": action_name, "retry": retry,
                              "lease_until": format_datetime(until)}
    if step is not None:
        detail["step"] = step
    return detail
