"""Recording what happened: a finished call made into its record, and what a batch of
attempts comes to as `decide` says (retries scheduled, jobs ended), for the store to write."""

from __future__ import annotations

import asyncio
import functools
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from scheduler.actions.base import Outcome, ReadyAction
from scheduler.domain.callbacks import redacted
from scheduler.domain.durations import format_datetime
from scheduler.domain.executions import (
    MAIN_ACTION,
    Decision,
    EventKind,
    ExecutionPoint,
    Next,
    StepAttempt,
    StepRecord,
    attempt_kind,
    clipped_text,
    clipped_value,
    decide,
    ending_kind,
    job_state_after,
    steps_after,
)
from scheduler.domain.jobs import JobDefinition, Sequence, Stage
from scheduler.domain.retry import NO_RETRY
from scheduler.domain.states import ExecutionStatus, JobState, Trigger
from scheduler.engine.leased import Claimed
from scheduler.engine.store import EngineStore, JobStanding, NewRow, Outcomes

log = logging.getLogger(__name__)

# The most missed occurrences one tick records one by one, each with its execution.
MAX_MISSED_ONE_BY_ONE = 1000


def missed_history(job_pk: int, job_state: str, repeat_count: int, scheduled: datetime,
                   reason: str, now: datetime, execution_id: str) -> dict[str, Any]:
    """The history row of an occurrence the service missed (its execution is `missed`), and
    why it did not run after all (its job's catch-up)."""
    return EngineStore.unattempted_history(
        job_pk, job_state, repeat_count, scheduled, now, execution_id, ExecutionStatus.MISSED,
        f"Missed: the occurrence due at {scheduled.isoformat()} passed while the service was "
        f"not running; {reason}.")


def missed_beyond_history(job_pk: int, job_state: str, repeat_count: int, count: int,
                          first: datetime, last: datetime, now: datetime) -> dict[str, Any]:
    """One history row for the missed occurrences past those recorded one by one: how many,
    and from when to when (they have no execution each)."""
    return EngineStore.unattempted_history(
        job_pk, job_state, repeat_count, first, now, None, ExecutionStatus.MISSED,
        f"Missed: {count} occurrences due from {first.isoformat()} to {last.isoformat()} "
        f"passed while the service was not running; past the {MAX_MISSED_ONE_BY_ONE} latest, "
        "they are recorded as this one entry.")


def unrunnable_history(job_pk: int, repeat_count: int, scheduled: datetime, now: datetime,
                       reason: str, execution_id: str | None) -> dict[str, Any]:
    """The history row of an attempt that failed before its call could be made: the job's
    stored version cannot run, and the job is faulted. `execution_id` is the execution
    failed with it; None when the tick faults the job before making one."""
    return {
        "job_pk": job_pk, "timestamp": now, "start_time": now, "end_time": now,
        "expected_execution_time": scheduled, "state": JobState.FAULTED,
        "status": ExecutionStatus.FAILED, "action_name": MAIN_ACTION, "retry_count": 0,
        "repeat_count": repeat_count, "execution_id": execution_id,
        "message": (f"The job cannot run: {reason}. It stays faulted, and fires no more, "
                    "until it is changed or enabled again."),
    }


@dataclass(slots=True)
class AttemptRecord:
    """One finished attempt of a leased execution, as the engine reports it."""

    execution_id: str
    job_pk: int | None  # None for a run of an inline definition
    node: str
    action_name: str
    attempt: int
    repeat_count: int
    scheduled_time: datetime
    definition: JobDefinition
    outcome: Outcome
    started: datetime
    ended: datetime
    revision: int = 0
    step: int | None = None
    steps: tuple[StepRecord, ...] = ()
    sent: Mapping[str, Any] | None = None  # a step's input: what its action sent
    attempts: int = 0  # attempts made before this one
    trigger: str = Trigger.SCHEDULE  # what made the execution
    callback: str | None = None  # what it is to a callback (`Claimed.callback_state`)


@dataclass(frozen=True, slots=True)
class Answered:
    """An action's done future as it came, to be read into the attempt's record when
    recorded, so that calls still waiting to go out are not kept waiting meanwhile."""

    execution: Claimed
    call: ReadyAction
    started: datetime
    ended: datetime
    answer: asyncio.Future[Any]


def attempt_record(claimed: Claimed, outcome: Outcome, node: str, started: datetime,
                   ended: datetime, call: ReadyAction | None = None) -> AttemptRecord:
    """A finished attempt, as `record_attempts` stores it; a step's, and a call's that waits
    for a callback, with what it sent (the callback URL's token redacted wherever the call
    or its answer has it)."""
    token = claimed.callback_token
    sent = call.describe() if call is not None and (
        claimed.in_sequence or token is not None) else None
    if token is not None:
        outcome = Outcome(outcome.success, redacted(outcome.message, token),
                          redacted(outcome.output, token), outcome.accepted)
        sent = redacted(sent, token)
    log_attempt(claimed, outcome)
    return AttemptRecord(
        claimed.execution_id, claimed.job_pk, node, claimed.action_name, claimed.attempt,
        claimed.repeat_count, claimed.scheduled_time, claimed.version.definition, outcome,
        started, ended, claimed.revision, claimed.step, claimed.steps, sent, claimed.attempts,
        claimed.trigger, claimed.callback_state)


def read_answer(answered: Answered, node: str, timeouts: tuple[float, float]) -> AttemptRecord:
    """The record of an attempt from its answer; `timeouts` are an attempt's default one
    and the longest any may have."""
    execution = answered.execution
    outcome = answered.call.outcome(answered.answer, execution.timeout(*timeouts))
    return attempt_record(execution, outcome, node, answered.started, answered.ended,
                          answered.call)


def log_attempt(claimed: Claimed, outcome: Outcome) -> None:
    """One line per attempt: failed ones at info, the others at debug."""
    if outcome.success and not log.isEnabledFor(logging.DEBUG):
        return
    fields = {"job_id": claimed.version.job_id, "collection": claimed.version.collection,
              "execution_id": claimed.execution_id, "action": claimed.action_name,
              "attempt": claimed.attempts + 1}
    if outcome.success:
        log.debug("attempt succeeded: %s", outcome.message, extra=fields)
    else:
        log.info("attempt failed: %s", outcome.message, extra=fields)


@dataclass
class _JobState:
    """What recording needs to know of a job, and what it changes."""

    state: str
    next_execution_time: datetime | None
    still_open: int
    failures: int = 0
    faults: int = 0
    new_state: JobState | None = None


def outcomes(records: list[AttemptRecord], jobs: list[tuple[JobStanding, int]]) -> Outcomes:
    """What attempts still leased to their node come to, each as `decide` says (done, retry,
    error action), with `jobs` their jobs as the store read them (each with how many of its
    executions are open): the rows the store writes, whatever the batch's size, with one
    statement each."""
    states = {row.id: _JobState(row.state, row.next_execution_time, still_open)
              for row, still_open in jobs}
    history: list[dict[str, Any]] = []
    executions: list[dict[str, Any]] = []
    events: list[NewRow] = []
    for record in records:
        stage = record.definition.stage(record.action_name, record.step)
        if record.job_pk is not None:
            job = states.get(record.job_pk)
            if job is None:  # the job is gone, and its executions with it
                continue
            history.append(_history_row(record, job.state, stage))
        else:  # an inline definition: no job, no job history
            job = None
        row, decision, steps = _decide(record, job, stage)
        executions.append(row)
        events.extend(attempt_events(record, stage, decision, steps))
    return Outcomes(history, executions,
                    [(pk, job.failures, job.faults) for pk, job in states.items()
                     if job.failures or job.faults],
                    {pk: job.new_state for pk, job in states.items()
                     if job.new_state is not None}, events)


def _history_row(record: AttemptRecord, job_state: str, stage: Stage | None
                 ) -> dict[str, Any]:
    """The attempt's history row: what Azure's history says, and what ran (the execution,
    and the step of a sequence)."""
    outcome = record.outcome
    status = ExecutionStatus.COMPLETED if outcome.success else ExecutionStatus.FAILED
    step = stage.step if stage is not None else None
    return {
        "job_pk": record.job_pk, "timestamp": record.started, "start_time": record.started,
        "end_time": record.ended, "expected_execution_time": record.scheduled_time,
        "state": job_state, "status": status,
        "action_name": record.action_name, "message": outcome.message,
        "retry_count": record.attempt, "repeat_count": record.repeat_count,
        "execution_id": record.execution_id, "step_index": step,
        "step_name": _step_name(record.definition, step),
    }


def _step_name(definition: JobDefinition, step: int | None) -> str | None:
    """The name of the main action's step `step`, as the job gives it; None outside a
    sequence (only the main action is ever one)."""
    action = definition.action
    if step is None or not isinstance(action, Sequence):
        return None
    return action.steps[step].name


def _decide(record: AttemptRecord, job: _JobState | None, stage: Stage | None
            ) -> tuple[dict[str, Any], Decision, list[StepRecord]]:
    """The execution's row after this attempt, as `decide` says (`stage` is what the
    attempt ran), with that decision and the step records; the job's counters and final
    state follow from it."""
    outcome = record.outcome
    decision = decide(_point(record, stage), outcome,
                      stage.retry if stage is not None else NO_RETRY, record.ended)
    if job is not None:
        job.failures += decision.failure
        job.faults += decision.fault
        if decision.final:
            job.still_open -= 1
            if job.new_state is None:
                job.new_state = job_state_after(job.state, job.next_execution_time,
                                                job.still_open, decision.status)
    steps = _steps_after(record, stage, decision)
    return {
        "id": record.execution_id, "status": decision.status,
        "action_name": decision.action_name, "attempt": decision.attempt,
        "next_attempt_at": decision.at, "end_time": decision.ended,
        "message": outcome.message, **EngineStore.released(),
        "output": json.dumps(outcome.output), "revision": record.revision + 1,
        "attempts": record.attempts + 1,
        "step": decision.step if decision.step is not None else record.step,
        "steps": json.dumps(steps) if steps else None,
    }, decision, steps


def attempt_events(record: AttemptRecord, stage: Stage | None, decision: Decision,
                   steps: list[StepRecord]) -> list[NewRow]:
    """The events of a recorded attempt: the attempt itself (sent and answered in one
    event, written with its outcome), then what comes of it: a retry, a pause, the end."""
    event, execution_id, node = EngineStore.event_row, record.execution_id, record.node
    number = record.attempts + 1  # of the execution's attempts, from 1
    events = [event(execution_id, record.started,
                    attempt_kind(record.action_name, None if stage is None else stage.step),
                    node=node, attempt=number,
                    detail=_attempt_detail(record, stage, decision, steps))]
    ended = record.ended
    if decision.next == Next.RETRY and decision.at is not None:
        events.append(event(execution_id, ended, EventKind.RETRY_SCHEDULED, node=node,
                            attempt=number + 1, detail={
                                "action": decision.action_name, "retry": decision.attempt,
                                "next_attempt_at": format_datetime(decision.at),
                                "wait_seconds": (decision.at - ended).total_seconds()}))
    paused = _paused_step(decision, stage, steps)
    if paused is not None:
        events.append(event(execution_id, ended, EventKind.PAUSED, node=node, detail=paused))
    ending = ending_kind(decision)
    if ending is not None:
        events.append(event(execution_id, ended, ending, node=node, attempt=number,
                            detail=_attempts_made(number)))
    return events


@functools.lru_cache(maxsize=64)
def _attempts_made(number: int) -> str:
    """What an ending event says, encoded once per number: how many attempts were made."""
    return EngineStore.encoded_detail({"attempts": number})


def _attempt_detail(record: AttemptRecord, stage: Stage | None, decision: Decision,
                    steps: list[StepRecord]) -> dict[str, Any]:
    """What an attempt's event says: what ran (the action, its type, the step), its
    outcome (success, the message, the numbers among its output parameters: an HTTP
    answer's status code) and duration, and what comes next. A step's says what its record
    keeps: its status, input and output."""
    outcome = record.outcome
    detail: dict[str, Any] = {
        "action": record.action_name, "retry": record.attempt,
        "success": outcome.success, "message": clipped_text(outcome.message),
        "duration_ms": round((record.ended - record.started).total_seconds() * 1000),
        "next": decision.next.value}
    if stage is not None:
        detail["type"] = stage.action.kind
    # The action's own names, as its output parameters give them; headers and bodies are
    # left to the execution's record.
    numbers = {name: value for name, value in outcome.output.items()
               if isinstance(value, int | float)}
    if numbers:
        detail["output"] = numbers
    if stage is not None and stage.step is not None and stage.step < len(steps):
        step = steps[stage.step]
        detail.update(step=stage.step, name=step.get("name"), step_status=step.get("status"),
                      input=clipped_value(step.get("input")),
                      output=clipped_value(step.get("output")))
    return detail


def _paused_step(decision: Decision, stage: Stage | None, steps: list[StepRecord]
                 ) -> dict[str, Any] | None:
    """What a `paused` event says, if the attempt paused its sequence: the step that waits
    for `resume`, and why (`manual`: it runs only once resumed; `failed`: it failed for
    good and pauses its execution)."""
    if decision.next == Next.NEXT_STEP and decision.step is not None \
            and decision.status == ExecutionStatus.PAUSED:
        index, reason = decision.step, "manual"
    elif decision.next == Next.PAUSED and stage is not None and stage.step is not None:
        index, reason = stage.step, "failed"
    else:
        return None
    name = steps[index].get("name") if index < len(steps) else None
    return {"step": index, "name": name, "reason": reason}


def _point(record: AttemptRecord, stage: Stage | None) -> ExecutionPoint:
    """Where the execution stood when the attempt was made."""
    has_error_action = record.definition.error_action is not None
    if stage is None or stage.step is None:
        return ExecutionPoint(record.action_name, record.attempt, has_error_action)
    return ExecutionPoint(record.action_name, record.attempt, has_error_action, stage.step,
                          stage.steps, stage.pause_on_failure, stage.next_manual)


def _steps_after(record: AttemptRecord, stage: Stage | None, decision: Decision
                 ) -> list[StepRecord]:
    """The execution's step records, the attempted step's brought up to date."""
    sequence = record.definition.action
    if stage is None or stage.step is None or not isinstance(sequence, Sequence):
        return list(record.steps)
    attempt = StepAttempt(dict(record.sent or {}), dict(record.outcome.output),
                          record.outcome.message, format_datetime(record.started),
                          format_datetime(record.ended))
    return steps_after(list(record.steps), decision, stage.step,
                       [step.name for step in sequence.steps], record.outcome.success,
                       attempt)
