"""An engine node at work: passes over the database, calls readied for their instants, and
what finished recorded in batches.

The loop sees its node through `Node`, the few database steps it runs in threads. Its timers
(a readied group's instant, the heartbeat, the recording delay, the tries of the dead man's
switch) run through `Timers`: the event loop's in production; a test's, run at a fake clock's
time, when a test steps it.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import logging
from collections.abc import Callable, Collection, Coroutine, Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, Protocol

from scheduler.actions.base import Outcome, ReadyAction
from scheduler.clock import Clock
from scheduler.db.alerts import DeliveryResult
from scheduler.db.outage import Outage, is_unavailable
from scheduler.engine.courier import AlertCourier, Parcel
from scheduler.engine.deadman import DeadMansSwitch, PingReport
from scheduler.engine.leased import Claimed, Tick
from scheduler.engine.options import EngineOptions
from scheduler.engine.recorder import Answered, AttemptRecord, attempt_record, read_answer
from scheduler.engine.store import Glance
from scheduler.engine.versions import JobVersion

log = logging.getLogger(__name__)

RECORD_DELAY = timedelta(milliseconds=500)
# While ticks follow one another in a pass, readied calls are checked against their jobs
# when `wake` is set (an announced change sets it, and so does whatever else calls for a
# pass), and otherwise no more often than this: a check reads the job of every call
# waiting, thousands in a busy lookahead.
READIED_CHECK_EVERY = timedelta(milliseconds=500)
PRUNE_EVERY = timedelta(minutes=10)
# Outcomes a node keeps while the database cannot take them, at most.
KEPT_OUTCOMES = 100_000


class Node(Protocol):
    """What the loop asks of its engine node: steps on the database, each run in a thread
    (but `prepare` and `held`, which are quick)."""

    @property
    def node_id(self) -> str:
        """The node's name, which its leases and heartbeat carry."""
        ...

    def tick(self, now: datetime, horizon: datetime | None = None, lease: int = 0,
             surely_due: bool = False) -> Tick:
        """Make the executions of the occurrences due by `horizon`, leasing up to `lease`."""
        ...

    def claim_executions(self, now: datetime, limit: int | None = None) -> list[Claimed]:
        """Lease runnable executions: retries, error actions, those left over."""
        ...

    def prepare(self, claimed: Claimed) -> ReadyAction | Outcome:
        """The attempt's call made ready, or its outcome if it cannot be made."""
        ...

    def record(self, finished: list[AttemptRecord]) -> None:
        """Record finished attempts."""
        ...

    def changed_jobs(self, etags: Mapping[int, str]) -> dict[int, JobVersion | None]:
        """Of these jobs, those that stopped (None) or changed (their version now)."""
        ...

    def cancel(self, execution_ids: list[str], now: datetime) -> None:
        """Close executions whose job stopped."""
        ...

    def next_wakeup(self) -> datetime | None:
        """The earliest time anything needs the node."""
        ...

    def glance(self) -> Glance:
        """When jobs fall due, executions become runnable, disabled jobs are to be enabled."""
        ...

    def enable_paused_jobs(self, now: datetime) -> int:
        """Enable the disabled jobs whose time to wait came by `now`."""
        ...

    def prune(self, now: datetime) -> int:
        """Apply history retention."""
        ...

    def heartbeat(self, now: datetime, unsent: Collection[str] = (), starting: bool = False,
                  judging: bool = True) -> int:
        """Say the node is alive; hand back `unsent` and, `judging`, what dead nodes held."""
        ...

    def leave(self) -> None:
        """Take the node's heartbeat away."""
        ...

    def take_ping(self, now: datetime, interval: timedelta) -> PingReport | None:
        """Take the cluster's ping to its monitor unless a node took one within `interval`."""
        ...

    def extend_leases(self, execution_ids: list[str], now: datetime) -> set[str]:
        """Renew these leases; returns those the node no longer holds."""
        ...

    def not_held(self, execution_ids: list[str]) -> set[str]:
        """Of these executions, those the node no longer holds."""
        ...

    def held(self, readied: int, inflight: int) -> None:
        """Count the calls the node holds."""
        ...

    # Alerts the node made since its courier was last told: it delivers them at once.
    alerts_made: int

    def take_alerts(self, now: datetime, until: datetime, limit: int) -> list[Parcel]:
        """Lease the alerts due for delivery, their channels opened."""
        ...

    def alert_unstarted(self, now: datetime, limit: int) -> int:
        """Make the `late` alerts of executions not started in time; how many."""
        ...

    def finish_alerts(self, results: list[DeliveryResult]) -> None:
        """Store what the tries of alerts came to."""
        ...

    def next_alert_time(self) -> datetime | None:
        """When the next alert is due for delivery."""
        ...


class Cancellable(Protocol):
    """A timer that has been set."""

    def cancel(self) -> None:
        """Keep the timer from running."""


class Timers(Protocol):
    """Where the loop sets its timers."""

    def call_later(self, delay: float, callback: Callable[..., object], *args: Any
                   ) -> Cancellable:
        """Run `callback(*args)` in `delay` seconds."""
        ...


class _EventLoopTimers:
    """The running event loop's own timers."""

    def call_later(self, delay: float, callback: Callable[..., object], *args: Any
                   ) -> Cancellable:
        return asyncio.get_running_loop().call_later(delay, callback, *args)


@dataclass(frozen=True, slots=True)
class Readied:
    """A leased execution waiting for its scheduled time, its call made ready."""

    execution: Claimed
    call: ReadyAction | Outcome


class FiringLoop:
    """An engine node at work: calls readied for their instants, attempts in flight, and
    those finished but not yet recorded.

    Production runs it with `run`; a test steps it with `begin`, `run_pass`, its timers,
    `settle` and `record_finished`, the very methods `run` is made of.
    """

    def __init__(self, node: Node, options: EngineOptions, clock: Clock,
                 wake: asyncio.Event | None = None, timers: Timers | None = None,
                 dead_mans_switch: DeadMansSwitch | None = None,
                 courier: AlertCourier | None = None) -> None:
        self.node, self.options, self.clock = node, options, clock
        # Set to make for a pass at once: by an announced change, a take-over, a finish.
        self.wake = wake or asyncio.Event()
        self._timers: Timers = timers or _EventLoopTimers()
        # Leased executions waiting for their scheduled time, by execution id.
        self._waiting: dict[str, Readied] = {}
        self._none_waiting = asyncio.Event()
        self._none_waiting.set()
        self._inflight: dict[asyncio.Future[Any], str] = {}
        self._finished: list[AttemptRecord | Answered] = []
        self._record_timer: Cancellable | None = None
        # Work in the background: heartbeats, and checks of held executions.
        self._checks: set[asyncio.Future[None]] = set()
        self._more_due = False  # when the last pass ended, more was due at once
        # When the last pass ended, the earliest time a disabled job waits until (None:
        # none waits); and, after a try to enable such jobs failed, when to try again.
        self._paused_time: datetime | None = None
        self._paused_retry: datetime | None = None
        self._backlog = False  # the last tick made a whole batch: more jobs are due at once
        now = clock.now()
        self._last_prune = self._leases_renewed = self._readied_checked = now
        # Until when no other node takes over what this one holds (its heartbeat is young).
        self._alive_until: datetime | None = None
        self._unsent: set[str] = set()  # held here, calls not sent: to hand back
        self._beating = False
        self._beat_timer: Cancellable | None = None
        self._beat_failing = False
        # Before then, this node judges no other dead: after an outage of the database, every
        # node alive throughout needs `dead_after` to beat again.
        self._judging_from = now
        self._pass_outage = Outage(log, "engine pass")
        # The cluster's heartbeat to an outside monitor, if set; may be set until `begin`.
        self.dead_mans_switch = dead_mans_switch
        self._ping_timer: Cancellable | None = None
        # Delivers the alerts of jobs' events, beside the loop; may be set until `begin`.
        self.courier = courier

    # --- the node's life -------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Make passes until `stop`, each followed by a sleep until the next thing is due (at
        most `max_sleep`), `wake`, or a finish; then finish what is held."""
        self.begin()
        while not stop.is_set():
            delay = await self.run_pass()
            await _first_of(stop, self.wake, delay)
        await self.finish()

    def begin(self) -> None:
        """Start the heartbeat, renewed every `heartbeat`; its first beat takes over what
        nodes gone before this one held. Once: a heartbeat begun goes on until `finish`."""
        if self._beating:
            return
        self._beating = True
        self._check(self._beat_then_again())
        if self.dead_mans_switch is not None:
            self._check(self._ping_then_again(self.dead_mans_switch))
        if self.courier is not None:
            self.courier.start(self.node, self._timers, self._check)

    async def run_pass(self) -> float:
        """One pass at the clock's time: ready and lease what is due, renew leases, claim
        retries, record what finished when it is time to, prune the history now and then.
        Returns how long the loop may sleep before the next one."""
        self.wake.clear()  # a signal during the pass makes for another pass at once
        now = self.clock.now()
        try:
            await self._one_pass(now)
            self._report_held()
            self._tell_courier()  # of the alerts its ticks made: missed occurrences, faults
            if now - self._last_prune > PRUNE_EVERY:
                await asyncio.to_thread(self.node.prune, now)
                self._last_prune = now
            wakeup = self._read_wakeup(await asyncio.to_thread(self.node.glance))
        except Exception as exc:
            if is_unavailable(exc):
                self._pass_outage.failed(exc)
            else:
                log.exception("engine pass failed; retrying")
            wakeup = None
        else:
            self._pass_outage.succeeded()
        self._more_due = wakeup is not None and wakeup <= self.clock.now()
        delay = self.options.max_sleep
        if wakeup is not None:
            delay = min(delay, max(0.0, (wakeup - self.clock.now()).total_seconds()))
        return delay

    def _read_wakeup(self, glance: Glance) -> datetime | None:
        """The earliest time anything needs the node, as the glance at the end of a pass
        says (what `Node.next_wakeup` reads); the time a disabled job waits until is kept
        for the next pass, held off after a failed try."""
        paused = glance.paused_time
        if paused is not None and self._paused_retry is not None:
            paused = max(paused, self._paused_retry)
        self._paused_time = paused
        return glance._replace(paused_time=paused).wakeup(self.options.lookahead)

    async def settle(self) -> None:
        """Wait until the work in the background (heartbeats, checks of held executions) is
        done and no call is in flight."""
        while self._checks or self._inflight:
            await asyncio.wait([*self._checks, *self._inflight])

    async def finish(self) -> None:
        """Send the calls readied ahead at their instants (due within `lookahead`), wait for
        those in flight, record every outcome held, then stop the heartbeat and take it
        away."""
        await self._none_waiting.wait()
        await self.settle()
        try:
            await self._record(self._settled(self._finished))
        except Exception:  # the database is away: their leases lapse, and another node
            log.exception("%d outcomes could not be recorded as the engine stopped; their "
                          "calls will be made again", len(self._finished))
        self._beating = False
        if self._beat_timer is not None:
            self._beat_timer.cancel()
        if self._ping_timer is not None:
            self._ping_timer.cancel()
        if self.courier is not None:
            self.courier.stop()
        await self.settle()  # a beat under way, lest it come back after the node left
        if self.dead_mans_switch is not None:
            self.dead_mans_switch.close()
        await asyncio.to_thread(self.node.leave)

    # --- heartbeats ------------------------------------------------------------------------

    async def _beat_then_again(self) -> None:
        """Beat, its failure logged once per outage, and set the next beat."""
        interval = self.options.heartbeat.total_seconds()
        try:
            await self._beat()
            if self._beat_failing:
                log.warning("engine heartbeat renewed again")
                self._judging_from = self.clock.now() + self.options.dead_after
            self._beat_failing = False
        except Exception:
            if not self._beat_failing:  # once per outage, not once a second
                log.exception("engine heartbeat failed; retrying every %s s", interval)
            self._beat_failing = True
        if self._beating:
            self._beat_timer = self._timers.call_later(interval, self._beat_again)

    def _beat_again(self) -> None:
        self._beat_timer = None
        if self._beating:
            self._check(self._beat_then_again())

    async def _beat(self) -> None:
        """Say this node is alive, and hand back the executions of nodes that are not (and
        those held here whose calls were not sent); a pass follows at once to take them."""
        started = self.clock.now()
        unsent, self._unsent = self._unsent, set()
        try:
            # Right after a failed beat, the database may have been away for every node.
            judging = not self._beat_failing and started >= self._judging_from
            released = await asyncio.to_thread(self.node.heartbeat, started, unsent,
                                               self._alive_until is None, judging)
        except BaseException:
            self._unsent |= unsent
            raise
        self._alive_until = started + self.options.alive_for
        if released:
            log.warning("took over %d executions of engine nodes that stopped", released)
            self.wake.set()

    # --- the cluster's heartbeat to an outside monitor --------------------------------------

    async def _ping_then_again(self, switch: DeadMansSwitch) -> None:
        """Take the cluster's ping of this interval unless another node took it, send it
        without waiting for its answer, and set the next try in one interval."""
        try:
            report = await asyncio.to_thread(self.node.take_ping, self.clock.now(),
                                             switch.interval)
        except Exception as exc:  # no call: the monitor notices the silence
            switch.database_failed(exc)
        else:
            switch.database_answered()
            if report is not None:
                switch.send(report)
        if self._beating:
            self._ping_timer = self._timers.call_later(switch.interval.total_seconds(),
                                                       self._ping_again, switch)

    def _ping_again(self, switch: DeadMansSwitch) -> None:
        self._ping_timer = None
        if self._beating:
            self._check(self._ping_then_again(switch))

    def _surely_alive(self) -> bool:
        """Whether no other node can have taken over what this one holds: its last heartbeat
        is young enough."""
        return self._alive_until is not None and self.clock.now() < self._alive_until

    # --- a pass ----------------------------------------------------------------------------

    async def _one_pass(self, now: datetime) -> None:
        """Ready and lease what is due, renew leases and claim retries; meanwhile, on another
        connection, record what finished. A tick never waits for a lock (SKIP LOCKED), so the
        two cannot deadlock; on SQLite they take turns at the write lock. First, if the
        last glance says a disabled job's time to wait came, it is enabled (and fires in this
        pass if due): a pass that has none to enable reads nothing for them."""
        if self._paused_time is not None and self._paused_time <= now:
            await self._enable_paused(now)
        # Both end before the pass does, whichever fails (a database outage fails both).
        results = await asyncio.gather(self._make_and_claim(now), self.record_finished(),
                                       return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result

    async def _enable_paused(self, now: datetime) -> None:
        """Enable the disabled jobs whose time to wait came. A try that fails otherwise
        than by an outage is logged and made again after the longest sleep: the jobs due
        fire meanwhile, and the node does not pass again at once for it."""
        try:
            await asyncio.to_thread(self.node.enable_paused_jobs, now)
        except Exception as exc:
            if is_unavailable(exc):
                raise
            log.exception("could not enable the jobs disabled until now; retrying")
            self._paused_retry = now + timedelta(seconds=self.options.max_sleep)
        else:
            self._paused_retry = None

    async def _make_and_claim(self, now: datetime) -> None:
        """Bring readied calls up to date with their jobs, tick, renew leases, claim retries
        and executions left over."""
        node, options = self.node, self.options
        if self._waiting:
            await self._refresh_readied(now)
        # A whole tick's batch is leased, so no execution it makes waits for a claim; the
        # node takes no new batch while it holds its fill, leaving the jobs to other nodes.
        if self._room() > 0:
            await self._tick_and_start(now)
        if now - self._leases_renewed >= options.lease / 3:
            held = self._held_ids()
            if held:
                self._drop(await asyncio.to_thread(node.extend_leases, held, now))
            self._leases_renewed = now
        room = self._room()
        if room > 0:
            self._start_attempts(await asyncio.to_thread(node.claim_executions, now,
                                                         min(room, options.batch)))

    async def _tick_and_start(self, now: datetime) -> None:
        """Tick, and start what it leased. While ticks make whole batches (a backlog of due
        jobs, as after downtime) and the node has room, the next tick runs in its thread
        while the calls of the last one are started, so that the database makes the next
        batch while this one goes out; for no longer than the node's longest sleep, so that
        retries, take-overs and lease renewals wait no longer than for an idle node.

        Up to `ticks_at_once` ticks run at once: on PostgreSQL one waits for the server
        while the other runs; SQLite has one writer at a time."""
        options = self.options
        until = now + timedelta(seconds=options.max_sleep)
        ticking = collections.deque([self._tick_in_thread(now, surely_due=False)])
        try:
            while ticking:
                tick = await ticking.popleft()
                # Full: it made a whole batch. Due jobs whose occurrences were made already
                # (the unique key) stay due, and are no backlog.
                full = tick.made >= options.batch
                now = self.clock.now()
                while (full and len(ticking) < options.ticks_at_once and now < until
                       and self._room() > len(tick.claimed) + len(ticking) * options.batch):
                    ticking.append(self._tick_in_thread(now, surely_due=True))
                self._start_attempts(tick.claimed)
                if tick.canceled:  # replaced by new runs of their jobs
                    self.drop_canceled(tick.canceled)
                if ticking and self._waiting and self._readied_check_due(now):
                    await self._refresh_readied_or_log(now)  # as a pass would, meanwhile
        except Exception:
            await self._start_made(ticking)
            raise
        if self._backlog and not full and self._finished:
            self.wake.set()  # the backlog is made: another pass at once, to record
        self._backlog = full

    async def _start_made(self, ticking: Iterable[asyncio.Future[Tick]]) -> None:
        """Start what the ticks still running lease, though the pass failed: their
        executions are made, and leased to this node."""
        for running in ticking:
            with contextlib.suppress(Exception):  # the pass's own failure is logged
                self._start_attempts((await running).claimed)

    def _tick_in_thread(self, now: datetime, surely_due: bool) -> asyncio.Future[Tick]:
        """A tick leasing a whole batch to this node, started in a thread of its own."""
        options = self.options
        return asyncio.ensure_future(asyncio.to_thread(
            self.node.tick, now, now + options.lookahead, options.batch, surely_due))

    def _readied_check_due(self, now: datetime) -> bool:
        """Whether ticks following one another should stop to check readied calls: a
        pass is called for (as by an announced change), or the last check is
        `READIED_CHECK_EVERY` old."""
        return self.wake.is_set() or now - self._readied_checked >= READIED_CHECK_EVERY

    async def _refresh_readied_or_log(self, now: datetime) -> None:
        """`_refresh_readied`, its failure logged: the next pass tries again."""
        try:
            await self._refresh_readied(now)
        except Exception:
            log.exception("could not bring readied calls up to date; retrying")

    def _room(self) -> int:
        """How many more attempts the node may take: those readied, in flight and
        finished but not yet recorded count against `concurrency`."""
        return (self.options.concurrency - len(self._inflight) - len(self._waiting)
                - len(self._finished))

    def _held_ids(self) -> list[str]:
        """The executions this node holds leased: readied, in flight, or finished with
        their outcome not yet recorded."""
        return [*self._inflight.values(), *self._waiting,
                *(item.execution_id if isinstance(item, AttemptRecord)
                  else item.execution.execution_id for item in self._finished)]

    # --- readied calls and their jobs ------------------------------------------------------

    def drop_canceled(self, execution_ids: list[str]) -> None:
        """Executions were announced canceled: once the database confirms that this node
        no longer holds them, drop their readied calls and abandon those in flight."""
        held = set(self._inflight.values()) | set(self._waiting)
        mine = [execution_id for execution_id in execution_ids if execution_id in held]
        if mine:
            self._check(self._drop_if_not_held(mine))

    def _check(self, checking: Coroutine[Any, Any, None]) -> None:
        """Run work in the background, keeping it until done."""
        task = asyncio.ensure_future(checking)
        self._checks.add(task)
        task.add_done_callback(self._checks.discard)

    async def _drop_if_not_held(self, execution_ids: list[str]) -> None:
        try:
            self._drop(await asyncio.to_thread(self.node.not_held, execution_ids))
        except Exception:  # the lease renewal finds them out later
            log.exception("could not check canceled executions")

    def _drop(self, execution_ids: set[str]) -> None:
        """Forget the calls of executions this node no longer holds: readied ones are not
        sent, and those in flight are abandoned (their connections closed); nothing of
        them is recorded, as their leases are gone."""
        if not execution_ids:
            return
        for execution_id in execution_ids:
            self._take_readied(execution_id)
        for answer, execution_id in list(self._inflight.items()):
            if execution_id in execution_ids:
                answer.cancel()

    def _take_readied(self, execution_id: str) -> Readied | None:
        """Take a readied call out of those waiting (None if it is not there), saying so
        once none waits."""
        readied = self._waiting.pop(execution_id, None)
        if not self._waiting:
            self._none_waiting.set()
        return readied

    async def _refresh_readied(self, now: datetime) -> None:
        """Cancel readied calls whose job stopped while they waited, and make those of a job
        changed meanwhile again from its new version: an occurrence already made keeps its
        execution and its time, and goes out as its job is when it is due."""
        self._readied_checked = now
        etags: dict[int, str] = {}
        for readied in self._waiting.values():
            job_pk, etag = readied.execution.job_pk, readied.execution.version.etag
            if job_pk is None:  # an inline definition does not change
                continue
            if etags.setdefault(job_pk, etag) != etag:
                etags[job_pk] = ""  # readied from two versions: one of them is not current
        changed = await asyncio.to_thread(self.node.changed_jobs, etags)
        if not changed:
            return
        dropped: list[str] = []
        # Those launched meanwhile are gone from `_waiting`.
        for execution_id, readied in list(self._waiting.items()):
            if readied.execution.job_pk not in changed:
                continue
            version = changed[readied.execution.job_pk]
            if version is None:
                dropped.append(execution_id)
                self._take_readied(execution_id)
            elif version.etag != readied.execution.version.etag:
                execution = replace(readied.execution, version=version)
                self._waiting[execution_id] = Readied(execution, self.node.prepare(execution))
        if dropped:
            await asyncio.to_thread(self.node.cancel, dropped, now)

    # --- recording -------------------------------------------------------------------------

    async def record_finished(self) -> None:
        """Record the attempts that finished, when it is time to (`_time_to_record`)."""
        if self._finished and self._time_to_record():
            if self._record_timer is not None:
                self._record_timer.cancel()
                self._record_timer = None
            await self._record(self._settled(self._finished))

    async def _record(self, batch: list[AttemptRecord]) -> None:
        """Record a batch of finished attempts. One the database does not take is kept,
        before those that finished meanwhile, for the next recording: an outcome that came
        while the database was away is recorded once it is back, and its call is not made
        again. Past `KEPT_OUTCOMES` the oldest are let go: their leases lapse, and their
        calls are made again, with the same execution tag."""
        self._finished = []
        try:
            await asyncio.to_thread(self.node.record, batch)
        except BaseException:
            kept: list[AttemptRecord | Answered] = [*batch, *self._finished]
            if len(kept) > KEPT_OUTCOMES:
                log.warning("%d outcomes not recorded are let go: more than %d wait for the "
                            "database", len(kept) - KEPT_OUTCOMES, KEPT_OUTCOMES)
                kept = kept[len(kept) - KEPT_OUTCOMES:]
            self._finished = kept
            raise
        self._tell_courier()

    def _tell_courier(self) -> None:
        """Have the courier deliver at once the alerts the node just made."""
        if self.node.alerts_made and self.courier is not None:
            self.node.alerts_made = 0
            self.courier.poke()

    def _settled(self, finished: list[AttemptRecord | Answered]) -> list[AttemptRecord]:
        """The records of finished attempts, those of answers kept as they came read now."""
        node_id, options = self.node.node_id, self.options
        timeouts = (options.timeout, options.longest_timeout)
        return [item if isinstance(item, AttemptRecord) else
                read_answer(item, node_id, timeouts) for item in finished]

    def _time_to_record(self) -> bool:
        """Whether to record the attempts that finished now (`time_to_record`)."""
        return time_to_record(
            finished=len(self._finished), inflight=len(self._inflight),
            batch=self.options.batch, backlog=self._backlog, more_due=self._more_due,
            room=self._room(), delay_ran=self._record_timer is None)

    # --- attempts --------------------------------------------------------------------------

    def _start_attempts(self, claimed: list[Claimed]) -> None:
        """Start attempts at their scheduled time: those due now at once, the others with one
        timer per scheduled instant, their calls prepared while they wait."""
        now = self.clock.now()
        later: dict[datetime, list[str]] = {}
        for execution in claimed:
            if execution.scheduled_time > now:
                later.setdefault(execution.scheduled_time, []).append(execution.execution_id)
                self._waiting[execution.execution_id] = Readied(
                    execution, self.node.prepare(execution))
                self._none_waiting.clear()
            else:
                self._launch(execution)
        now = self.clock.now()  # preparing took time
        for moment, group in later.items():
            self._timers.call_later((moment - now).total_seconds(), self._launch_group, group)

    def _launch_group(self, execution_ids: list[str]) -> None:
        """Start a group of readied attempts whose time has come, once it is sure that this
        node still holds them."""
        if self._surely_alive():
            self._launch_readied(execution_ids)
        else:
            self._check(self._launch_if_held(execution_ids))

    async def _launch_if_held(self, execution_ids: list[str]) -> None:
        """This node's heartbeat is old: renew it, then send the calls of the executions it
        still holds; if it cannot, hand them back for any node to send."""
        try:
            await self._beat()
            lost = await asyncio.to_thread(self.node.not_held, execution_ids)
        except Exception:
            log.exception("could not make sure this node still holds %d readied calls; "
                          "handing them back", len(execution_ids))
            self._unsent.update(execution_id for execution_id in execution_ids
                                if self._take_readied(execution_id) is not None)
            return
        self._drop(lost)
        self._launch_readied([execution_id for execution_id in execution_ids
                              if execution_id not in lost])

    def _launch_readied(self, execution_ids: list[str]) -> None:
        """Start these readied attempts now."""
        for execution_id in execution_ids:
            readied = self._take_readied(execution_id)
            if readied is not None:  # else dropped, its job stopped
                self._launch(readied.execution, readied.call)
        self._report_held()

    def _report_held(self) -> None:
        """Tell the metrics how many calls wait for their instant and how many are out (as of
        each pass and each group sent: not per call, which would slow the sending)."""
        self.node.held(len(self._waiting), len(self._inflight))

    def _launch(self, execution: Claimed, call: ReadyAction | Outcome | None = None) -> None:
        """Start one attempt now."""
        if call is None:
            call = self.node.prepare(execution)
        started = self.clock.now()
        if isinstance(call, Outcome):  # known already: nothing to send
            self._keep(attempt_record(execution, call, self.node.node_id, started, started))
            return
        # No task of the loop's: the done future's callback keeps the answer, and a task
        # per call would cost more than the rest of sending it.
        answered = call.submit(execution.timeout(self.options.timeout,
                                                 self.options.longest_timeout))
        self._inflight[answered] = execution.execution_id
        answered.add_done_callback(functools.partial(self._answered, execution, call, started))

    def _answered(self, execution: Claimed, call: ReadyAction, started: datetime,
                  answered: asyncio.Future[Any]) -> None:
        """An action finished: its done future is kept as it came, and read when it is
        recorded, so that calls still waiting to go out are not kept waiting."""
        del self._inflight[answered]
        self._keep(Answered(execution, call, started, self.clock.now(), answered))

    def _keep(self, record: AttemptRecord | Answered) -> None:
        """Keep a finished attempt for the next recording; make for a pass once nothing is
        left in flight, or there is a batch to record while more jobs are due, or in
        `RECORD_DELAY` at the latest.

        Not a pass per finished call: a pass queries the database, and passes at the rate
        calls come back would compete with the calls still being made. A burst of calls due
        at one instant goes out before its outcomes are recorded, unless more are due."""
        self._finished.append(record)
        if not self._inflight or (self._more_due
                                  and len(self._finished) >= self.options.batch):
            self.wake.set()
        elif self._record_timer is None:  # the first outcome waiting to be recorded
            self._record_timer = self._timers.call_later(
                RECORD_DELAY.total_seconds(), self._record_due)

    def _record_due(self) -> None:
        """The oldest unrecorded outcome has waited long enough."""
        self._record_timer = None
        self.wake.set()


def time_to_record(*, finished: int, inflight: int, batch: int, backlog: bool,
                   more_due: bool, room: int, delay_ran: bool) -> bool:
    """Whether a node holding `finished` outcomes and `inflight` calls records now.

    Once calls stop coming back, or a batch is full while more is due, or the oldest outcome
    has waited `RECORD_DELAY` (`delay_ran`): recording while many calls are still being made
    would compete with them for the interpreter, so a pass that falls in the middle of a
    burst (its longest sleep ran out, say) leaves the outcomes for later. While catching up
    (`backlog`: the last tick made a whole batch, and the node has room for more) nothing
    is recorded: the batches due go out first, and their outcomes, still leased to this
    node, are recorded once the backlog is made or the node holds its fill."""
    if backlog and room > 0:
        return False
    full = finished >= batch
    return not inflight or (full and (backlog or more_due)) or delay_ran


async def _first_of(stop: asyncio.Event, wake: asyncio.Event, timeout: float) -> None:
    """Sleep until either event is set or the timeout passes."""
    waiters = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(wake.wait())]
    _done, pending = await asyncio.wait(waiters, timeout=timeout,
                                        return_when=asyncio.FIRST_COMPLETED)
    for waiter in pending:
        waiter.cancel()
