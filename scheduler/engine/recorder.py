"""Recording what happened: a finished call made into its record, and what a batch of
attempts comes to as `decide` says (retries scheduled, jobs ended), for the store to write."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from scheduler.actions.base import Outcome, ReadyAction
from scheduler.domain.durations import format_datetime
from scheduler.domain.executions import (
    MAIN_ACTION,
    Decision,
    ExecutionPoint,
    StepAttempt,
    StepRecord,
    decide,
    job_state_after,
    steps_after,
)
from scheduler.domain.jobs import JobDefinition, Sequence, Stage
from scheduler.domain.retry import NO_RETRY
from scheduler.domain.states import ExecutionStatus, JobState
from scheduler.engine.leased import Claimed
from scheduler.engine.store import EngineStore, JobStanding, Outcomes

log = logging.getLogger(__name__)


def missed_history(job_pk: int, job_state: str, repeat_count: int, scheduled: datetime,
                   fired_at: datetime, now: datetime, execution_id: str) -> dict[str, Any]:
    """The history row of an occurrence the service missed (its execution is `missed`)."""
    return {
        "job_pk": job_pk, "timestamp": now, "start_time": now, "end_time": now,
        "expected_execution_time": scheduled, "state": job_state, "status": ExecutionStatus.MISSED,
        "action_name": MAIN_ACTION, "retry_count": 0, "repeat_count": repeat_count,
        "execution_id": execution_id,
        "message": (f"Missed: the occurrence due at {scheduled.isoformat()} passed while the "
                    f"service was not running; the job fired once, for {fired_at.isoformat()}, "
                    "for all the occurrences it missed."),
    }


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
    """A finished attempt, as `record_attempts` stores it; a step's with what it sent."""
    sent = call.describe() if call is not None and claimed.in_sequence else None
    log_attempt(claimed, outcome)
    return AttemptRecord(
        claimed.execution_id, claimed.job_pk, node, claimed.action_name, claimed.attempt,
        claimed.repeat_count, claimed.scheduled_time, claimed.version.definition, outcome,
        started, ended, claimed.revision, claimed.step, claimed.steps, sent, claimed.attempts)


def read_answer(answered: Answered, node: str, timeout: float) -> AttemptRecord:
    """The record of an attempt from its answer; `timeout` is the attempt's default one."""
    execution = answered.execution
    outcome = answered.call.outcome(answered.answer, execution.timeout(timeout))
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
    for record in records:
        stage = record.definition.stage(record.action_name, record.step)
        if record.job_pk is None:  # an inline definition: no job, no job history
            executions.append(_decide(record, None, stage))
            continue
        job = states.get(record.job_pk)
        if job is not None:
            history.append(_history_row(record, job.state, stage))
            executions.append(_decide(record, job, stage))
    return Outcomes(history, executions,
                    [(pk, job.failures, job.faults) for pk, job in states.items()
                     if job.failures or job.faults],
                    {pk: job.new_state for pk, job in states.items()
                     if job.new_state is not None})


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
            ) -> dict[str, Any]:
    """The execution's row after this attempt, as `decide` says (`stage` is what the
    attempt ran); the job's counters and final state follow from it."""
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
    }


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
