"""The engine node's loop: passes over the database, and calls readied for their instants."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import heapq
import itertools
import logging
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

from scheduler.actions.base import Outcome, ReadyAction
from scheduler.clock import Clock
from scheduler.engine import recorder

if TYPE_CHECKING:
    from scheduler.engine.node import Claimed, Engine, Tick

log = logging.getLogger(__name__)

RECORD_DELAY = timedelta(milliseconds=500)
# While ticks follow one another in a pass, readied calls are checked against their jobs
# when `wake` is set (an announced change sets it, and so does whatever else calls for a
# pass), and otherwise no more often than this: a check reads the job of every call
# waiting, thousands in a busy lookahead.
READIED_CHECK_EVERY = timedelta(milliseconds=500)


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


@dataclass(order=True)
class _ManualTimer:
    due: datetime
    order: int
    callback: Callable[..., object] = field(compare=False)
    args: tuple[Any, ...] = field(compare=False)
    cancelled: bool = field(default=False, compare=False)

    def cancel(self) -> None:
        self.cancelled = True


class ManualTimers:
    """Timers that run only when told, at a clock's time: a test sets the fake clock and
    calls `run_due`, and no test sleeps for the loop's timers."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self._timers: list[_ManualTimer] = []
        self._order = itertools.count()

    def call_later(self, delay: float, callback: Callable[..., object], *args: Any
                   ) -> Cancellable:
        """Set a timer `delay` seconds after the clock's time."""
        timer = _ManualTimer(self.clock.now() + timedelta(seconds=delay), next(self._order),
                             callback, args)
        heapq.heappush(self._timers, timer)
        return timer

    def run_due(self) -> int:
        """Run, in order, every timer due by the clock's time; returns how many ran."""
        ran = 0
        while self._timers and self._timers[0].due <= self.clock.now():
            timer = heapq.heappop(self._timers)
            if not timer.cancelled:
                timer.callback(*timer.args)
                ran += 1
        return ran

    @property
    def pending(self) -> int:
        """How many timers are set and not cancelled."""
        return sum(not timer.cancelled for timer in self._timers)


@dataclass(frozen=True, slots=True)
class Readied:
    """A leased execution waiting for its scheduled time, its call made ready."""

    execution: Claimed
    call: ReadyAction | Outcome


@dataclass(frozen=True, slots=True)
class Answered:
    """An action's done future as it came, to be read into the attempt's record when
    recorded."""

    execution: Claimed
    call: ReadyAction
    started: datetime
    ended: datetime
    answer: asyncio.Future[Any]


class FiringLoop:
    """An engine node at work (`Engine.run_forever`): calls readied for their instants,
    attempts in flight, and those finished but not yet recorded.

    Its timers (a readied group's instant, the recording delay) run through `timers`, the
    event loop by default; tests pass `ManualTimers` and run them at the fake clock's time.
    """

    def __init__(self, engine: Engine, wake: asyncio.Event, timers: Timers | None = None
                 ) -> None:
        self.engine, self.wake = engine, wake
        self.timers: Timers = timers or _EventLoopTimers()
        # Leased executions waiting for their scheduled time, by execution id.
        self.waiting: dict[str, Readied] = {}
        self.inflight: dict[asyncio.Future[Any], str] = {}
        self.finished: list[recorder.AttemptRecord | Answered] = []
        self.record_timer: Cancellable | None = None
        self.checks: set[asyncio.Future[None]] = set()  # of held executions, in the database
        self.more_due = False  # when the last pass ended, more was due at once
        self.backlog = False  # the last tick made a whole batch: more jobs are due at once
        now = engine.clock.now()
        self.last_prune = self.leases_renewed = self.readied_checked = now
        # Until when no other node takes over what this one holds (its heartbeat is young).
        self.alive_until: datetime | None = None
        self.unsent: set[str] = set()  # held here, calls not sent: to hand back
        self.beat_failing = False

    async def run(self, stop: asyncio.Event) -> None:
        """Make passes until `stop`, then finish and record what is held."""
        engine = self.engine
        beating = asyncio.ensure_future(self.keep_beating())
        while not stop.is_set():
            self.wake.clear()  # a signal during the pass below makes for another pass at once
            now = engine.clock.now()
            try:
                await self.one_pass(now)
                self.report_held()
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
        beating.cancel()
        await asyncio.to_thread(engine.leave)

    async def keep_beating(self) -> None:
        """Renew this node's heartbeat every `heartbeat`, the first one taking over what nodes
        gone before it held."""
        interval = self.engine.options.heartbeat.total_seconds()
        while True:
            try:
                await self.beat()
                if self.beat_failing:
                    log.warning("engine heartbeat renewed again")
                self.beat_failing = False
            except Exception:
                if not self.beat_failing:  # once per outage, not once a second
                    log.exception("engine heartbeat failed; retrying every %s s", interval)
                self.beat_failing = True
            await asyncio.sleep(interval)

    async def beat(self) -> None:
        """Say this node is alive, and hand back the executions of nodes that are not (and
        those held here whose calls were not sent); a pass follows at once to take them."""
        engine = self.engine
        started = engine.clock.now()
        unsent, self.unsent = self.unsent, set()
        try:
            released = await asyncio.to_thread(engine.heartbeat, started, unsent,
                                               self.alive_until is None)
        except BaseException:
            self.unsent |= unsent
            raise
        self.alive_until = started + engine.options.alive_for
        if released:
            log.warning("took over %d executions of engine nodes that stopped", released)
            self.wake.set()

    def surely_alive(self) -> bool:
        """Whether no other node can have taken over what this one holds: its last heartbeat
        is young enough."""
        return self.alive_until is not None and self.engine.clock.now() < self.alive_until

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
        if self.room() > 0:
            await self.tick_and_start(now)
        if now - self.leases_renewed >= options.lease / 3:
            held = self.held_ids()
            if held:
                self.drop(await asyncio.to_thread(engine.extend_leases, held, now))
            self.leases_renewed = now
        room = self.room()
        if room > 0:
            self.start(await asyncio.to_thread(engine.claim_executions, now,
                                               min(room, options.batch)))

    async def tick_and_start(self, now: datetime) -> None:
        """Tick, and start what it leased. While ticks make whole batches (a backlog of due
        jobs, as after downtime) and the node has room, the next tick runs in its thread
        while the calls of the last one are started, so that the database makes the next
        batch while this one goes out; for no longer than the node's longest sleep, so that
        retries, take-overs and lease renewals wait no longer than for an idle node.

        On PostgreSQL two ticks run at once (SKIP LOCKED keeps their jobs apart), so that
        one waits for the server while the other runs; SQLite has one writer at a time."""
        engine, options = self.engine, self.engine.options
        until = now + timedelta(seconds=options.max_sleep)
        at_once = 1 if engine.db.is_sqlite else 2
        ticking = collections.deque([self._tick_in_thread(now, surely_due=False)])
        try:
            while ticking:
                tick = await ticking.popleft()
                # Full: it made a whole batch. Due jobs whose occurrences were made already
                # (the unique key) stay due, and are no backlog.
                full = tick.made >= options.batch
                now = engine.clock.now()
                while (full and len(ticking) < at_once and now < until
                       and self.room() > len(tick.claimed) + len(ticking) * options.batch):
                    ticking.append(self._tick_in_thread(now, surely_due=True))
                self.start(tick.claimed)
                if ticking and self.waiting and self.readied_check_due(now):
                    await self.refresh_readied_or_log(now)  # as a pass would, meanwhile
        except Exception:
            await self._start_made(ticking)
            raise
        if self.backlog and not full and self.finished:
            self.wake.set()  # the backlog is made: another pass at once, to record
        self.backlog = full

    async def _start_made(self, ticking: Iterable[asyncio.Future[Tick]]) -> None:
        """Start what the ticks still running lease, though the pass failed: their
        executions are made, and leased to this node."""
        for running in ticking:
            with contextlib.suppress(Exception):  # the pass's own failure is logged
                self.start((await running).claimed)

    def _tick_in_thread(self, now: datetime, surely_due: bool) -> asyncio.Future[Tick]:
        """A tick leasing a whole batch to this node, started in a thread of its own."""
        engine, options = self.engine, self.engine.options
        return asyncio.ensure_future(asyncio.to_thread(
            engine.tick, now, now + options.lookahead, options.batch, surely_due))

    def readied_check_due(self, now: datetime) -> bool:
        """Whether ticks following one another should stop to check readied calls: a
        pass is called for (as by an announced change), or the last check is
        `READIED_CHECK_EVERY` old."""
        return self.wake.is_set() or now - self.readied_checked >= READIED_CHECK_EVERY

    async def refresh_readied_or_log(self, now: datetime) -> None:
        """`refresh_readied`, its failure logged: the next pass tries again."""
        try:
            await self.refresh_readied(now)
        except Exception:
            log.exception("could not bring readied calls up to date; retrying")

    def room(self) -> int:
        """How many more attempts the node may take: those readied, in flight and
        finished but not yet recorded count against `concurrency`."""
        return (self.engine.options.concurrency - len(self.inflight) - len(self.waiting)
                - len(self.finished))

    def held_ids(self) -> list[str]:
        """The executions this node holds leased: readied, in flight, or finished with
        their outcome not yet recorded."""
        return [*self.inflight.values(), *self.waiting,
                *(item.execution_id if isinstance(item, recorder.AttemptRecord)
                  else item.execution.execution_id for item in self.finished)]

    def drop_canceled(self, execution_ids: list[str]) -> None:
        """Executions were announced canceled: once the database confirms that this node
        no longer holds them, drop their readied calls and abandon those in flight."""
        held = set(self.inflight.values()) | set(self.waiting)
        mine = [execution_id for execution_id in execution_ids if execution_id in held]
        if mine:
            self.check(self._drop_if_not_held(mine))

    def check(self, checking: Coroutine[Any, Any, None]) -> None:
        """Run a check of held executions in the background, keeping it until done."""
        task = asyncio.ensure_future(checking)
        self.checks.add(task)
        task.add_done_callback(self.checks.discard)

    async def _drop_if_not_held(self, execution_ids: list[str]) -> None:
        try:
            self.drop(await asyncio.to_thread(self.engine.not_held, execution_ids))
        except Exception:  # the lease renewal finds them out later
            log.exception("could not check canceled executions")

    def drop(self, execution_ids: set[str]) -> None:
        """Forget the calls of executions this node no longer holds: readied ones are not
        sent, and those in flight are abandoned (their connections closed); nothing of
        them is recorded, as their leases are gone."""
        if not execution_ids:
            return
        for execution_id in execution_ids:
            self.waiting.pop(execution_id, None)
        for answer, execution_id in list(self.inflight.items()):
            if execution_id in execution_ids:
                answer.cancel()

    async def refresh_readied(self, now: datetime) -> None:
        """Cancel readied calls whose job stopped while they waited, and make those of a job
        changed meanwhile again from its new version: an occurrence already made keeps its
        execution and its time, and goes out as its job is when it is due."""
        engine = self.engine
        self.readied_checked = now
        etags: dict[int, str] = {}
        for readied in self.waiting.values():
            job_pk, etag = readied.execution.job_pk, readied.execution.version.etag
            if job_pk is None:  # an inline definition does not change
                continue
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
                self.waiting[execution_id] = Readied(execution, engine.prepare(execution))
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

    def settled(self, finished: list[recorder.AttemptRecord | Answered]
                ) -> list[recorder.AttemptRecord]:
        """The records of finished attempts, those of answers kept as they came made now."""
        return [item if isinstance(item, recorder.AttemptRecord) else self.read(item)
                for item in finished]

    def read(self, answered: Answered) -> recorder.AttemptRecord:
        """The record of an attempt from its answer."""
        engine = self.engine
        execution = answered.execution
        outcome = answered.call.outcome(answered.answer,
                                        execution.timeout(engine.options.timeout))
        return engine.attempt_record(execution, outcome, answered.started, answered.ended,
                                     answered.call)

    def time_to_record(self) -> bool:
        """Record once calls stop coming back, or a batch is full while more is due, or the
        oldest outcome has waited `RECORD_DELAY` (its timer has run): recording while many
        calls are still being made would compete with them for the interpreter, so a pass
        that falls in the middle of a burst (its longest sleep ran out, say) leaves the
        outcomes for later. While catching up (the last tick made a whole batch, and the
        node has room for more) nothing is recorded: the batches due go out first, and
        their outcomes, still leased to this node, are recorded once the backlog is made or
        the node holds its fill."""
        if self.backlog and self.room() > 0:
            return False
        full = len(self.finished) >= self.engine.options.batch
        return (not self.inflight or (full and (self.backlog or self.more_due))
                or self.record_timer is None)

    def start(self, claimed: list[Claimed]) -> None:
        """Start attempts at their scheduled time: those due now at once, the others with one
        timer per scheduled instant, their calls prepared while they wait."""
        now = self.engine.clock.now()
        later: dict[datetime, list[str]] = {}
        for execution in claimed:
            if execution.scheduled_time > now:
                later.setdefault(execution.scheduled_time, []).append(execution.execution_id)
                self.waiting[execution.execution_id] = Readied(
                    execution, self.engine.prepare(execution))
            else:
                self.launch(execution)
        now = self.engine.clock.now()  # preparing took time
        for moment, group in later.items():
            self.timers.call_later((moment - now).total_seconds(), self.launch_all, group)

    def launch_all(self, execution_ids: list[str]) -> None:
        """Start a group of readied attempts whose time has come, once it is sure that this
        node still holds them."""
        if self.surely_alive():
            self.launch_waiting(execution_ids)
        else:
            self.check(self._launch_if_held(execution_ids))

    async def _launch_if_held(self, execution_ids: list[str]) -> None:
        """This node's heartbeat is old: renew it, then send the calls of the executions it
        still holds; if it cannot, hand them back for any node to send."""
        try:
            await self.beat()
            lost = await asyncio.to_thread(self.engine.not_held, execution_ids)
        except Exception:
            log.exception("could not make sure this node still holds %d readied calls; "
                          "handing them back", len(execution_ids))
            self.unsent.update(execution_id for execution_id in execution_ids
                               if self.waiting.pop(execution_id, None) is not None)
            return
        self.drop(lost)
        self.launch_waiting([execution_id for execution_id in execution_ids
                             if execution_id not in lost])

    def launch_waiting(self, execution_ids: list[str]) -> None:
        """Start these readied attempts now."""
        for execution_id in execution_ids:
            readied = self.waiting.pop(execution_id, None)
            if readied is not None:  # else dropped, its job stopped
                self.launch(readied.execution, readied.call)
        self.report_held()

    def report_held(self) -> None:
        """Tell the metrics how many calls wait for their instant and how many are out (as of
        each pass and each group sent: not per call, which would slow the sending)."""
        self.engine.metrics.held(len(self.waiting), len(self.inflight))

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
        answered = call.submit(execution.timeout(engine.options.timeout))
        self.inflight[answered] = execution.execution_id
        answered.add_done_callback(functools.partial(self.answered, execution, call, started))

    def answered(self, execution: Claimed, call: ReadyAction, started: datetime,
                 answered: asyncio.Future[Any]) -> None:
        """An action finished: its done future is kept as it came, and read when it is
        recorded, so that calls still waiting to go out are not kept waiting."""
        del self.inflight[answered]
        self.keep(Answered(execution, call, started, self.engine.clock.now(), answered))

    def keep(self, record: recorder.AttemptRecord | Answered) -> None:
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
            self.record_timer = self.timers.call_later(
                RECORD_DELAY.total_seconds(), self.record_due)

    def record_due(self) -> None:
        """The oldest unrecorded outcome has waited long enough."""
        self.record_timer = None
        self.wake.set()


async def _first_of(stop: asyncio.Event, wake: asyncio.Event, timeout: float) -> None:
    """Sleep until either event is set or the timeout passes."""
    waiters = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(wake.wait())]
    _done, pending = await asyncio.wait(waiters, timeout=timeout,
                                        return_when=asyncio.FIRST_COMPLETED)
    for waiter in pending:
        waiter.cancel()
