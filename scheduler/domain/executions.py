"""What happens to an execution after each attempt: the one transition function."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, Protocol

from scheduler.domain.retry import RetryPolicy
from scheduler.domain.states import ExecutionStatus, JobState, StepStatus

MAIN_ACTION, ERROR_ACTION = "MainAction", "ErrorAction"


class AttemptResult(Protocol):
    """What `decide` needs of an attempt's outcome."""

    @property
    def success(self) -> bool:
        """Whether the action succeeded."""
        ...


@dataclass(frozen=True, slots=True)
class ExecutionPoint:
    """Where an execution stood when its attempt was made."""

    action_name: str  # MAIN_ACTION or ERROR_ACTION
    attempt: int  # 0 for the first attempt of the action (or step), then 1 per retry
    has_error_action: bool
    step: int | None = None  # in a sequence: the step the attempt ran
    steps: int = 0  # in a sequence: how many steps it has
    pause_on_failure: bool = False  # the step pauses its execution when it fails for good
    next_manual: bool = False  # the next step waits for `resume` before it runs


class Next(StrEnum):
    """The kinds of what comes after an attempt."""

    COMPLETED = "completed"  # the main action succeeded
    FAILED = "failed"  # no retry left, no error action (or the error action ran)
    RETRY = "retry"  # the same action again, at `Decision.at`
    ERROR_ACTION = "error action"  # the main action failed for good: its error action, now
    NEXT_STEP = "next step"  # a step succeeded: the next one, now or once resumed
    PAUSED = "paused"  # a step failed for good and pauses its execution until resumed


@dataclass(frozen=True, slots=True)
class Decision:
    """What happens next to an execution, and what its attempt counts for its job."""

    next: Next
    status: ExecutionStatus
    action_name: str
    attempt: int
    at: datetime | None = None  # when the next attempt is due
    step: int | None = None  # in a sequence: the step the next attempt runs
    ended: datetime | None = None  # when the execution ended, if it did
    failure: bool = False  # the attempt failed
    fault: bool = False  # the main action failed for good

    @property
    def final(self) -> bool:
        """Whether the execution ended."""
        return self.ended is not None


def decide(execution: ExecutionPoint, outcome: AttemptResult, policy: RetryPolicy,
           now: datetime) -> Decision:
    """The execution's next step after an attempt that ended at `now`.

    Main action: success completes the execution; a failure is retried by `policy`, then
    hands over to the error action, or fails the execution if there is none. An error action
    is retried by its own policy; whatever it comes to, the execution has failed.

    In a sequence, `policy` is the step's: a step that succeeds hands over to the next one
    (at once, or paused if that one is manual), and the last one completes the execution; a
    step that fails for good pauses the execution if it says so, and otherwise fails the
    main action as above.
    """
    name, attempt, step = execution.action_name, execution.attempt, execution.step
    if outcome.success:
        if name == MAIN_ACTION and step is not None and step + 1 < execution.steps:
            if execution.next_manual:
                return Decision(Next.NEXT_STEP, ExecutionStatus.PAUSED, name, 0,
                                step=step + 1)
            return Decision(Next.NEXT_STEP, ExecutionStatus.PENDING, name, 0, at=now,
                            step=step + 1)
        status = ExecutionStatus.COMPLETED if name == MAIN_ACTION else ExecutionStatus.FAILED
        return Decision(Next(status.value), status, name, attempt, ended=now, step=step)
    delay = policy.delay_before(attempt + 1)
    if delay is not None:
        return Decision(Next.RETRY, ExecutionStatus.PENDING, name, attempt + 1, at=now + delay,
                        step=step, failure=True)
    fault = name == MAIN_ACTION
    if fault and execution.pause_on_failure:
        return Decision(Next.PAUSED, ExecutionStatus.PAUSED, name, attempt, step=step,
                        failure=True)
    if fault and execution.has_error_action:
        return Decision(Next.ERROR_ACTION, ExecutionStatus.PENDING, ERROR_ACTION, 0, at=now,
                        failure=True, fault=True)
    return Decision(Next.FAILED, ExecutionStatus.FAILED, name, attempt, ended=now,
                    step=step, failure=True, fault=fault)


def job_state_after(state: str, next_fire: datetime | None, still_open: int,
                    ended: ExecutionStatus) -> JobState | None:
    """A job's new state once one of its executions ended as `ended`, `still_open` being
    left open: a job with no occurrence and no execution left ends completed or faulted."""
    if next_fire is not None or still_open > 0:
        return None
    if state not in (JobState.ENABLED, JobState.DISABLED):
        return None
    return JobState.COMPLETED if ended == ExecutionStatus.COMPLETED else JobState.FAULTED


# A step's record in an execution, as stored: name, status, tries, input, output, message,
# start_time and end_time (ISO-8601 text).
StepRecord = dict[str, Any]


@dataclass(frozen=True, slots=True)
class StepAttempt:
    """What one attempt of a step sent and got, for its record."""

    input: Any
    output: Any
    message: str
    started: str
    ended: str


def waiting_step(name: str) -> StepRecord:
    """The record of a manual step that has not been approved yet."""
    return {"name": name, "status": StepStatus.WAITING, "tries": 0}


def steps_after(steps: list[StepRecord], decision: Decision, ran: int, names: list[str],
                success: bool, attempt: StepAttempt) -> list[StepRecord]:
    """The step records once step number `ran` was attempted and `decide` said `decision`:
    its record updated, and the next step's begun when the sequence moves on."""
    records = [dict(record) for record in steps]
    while len(records) <= ran:
        records.append({"name": names[len(records)], "status": StepStatus.PENDING,
                        "tries": 0})
    record = records[ran]
    record["tries"] = int(record.get("tries", 0)) + 1
    record["input"], record["output"] = attempt.input, attempt.output
    record["message"] = attempt.message
    record.setdefault("start_time", attempt.started)
    record["end_time"] = attempt.ended
    if success:
        record["status"] = StepStatus.COMPLETED
    elif decision.next == Next.RETRY:
        record["status"] = StepStatus.PENDING
    elif decision.next == Next.PAUSED:
        record["status"] = StepStatus.PAUSED
    else:
        record["status"] = StepStatus.FAILED
    if decision.next == Next.NEXT_STEP and decision.step is not None:
        del records[decision.step:]
        if decision.status == ExecutionStatus.PAUSED:
            records.append(waiting_step(names[decision.step]))
        else:
            records.append({"name": names[decision.step], "status": StepStatus.PENDING,
                            "tries": 0})
    return records


def resumed_steps(steps: list[StepRecord], step: int) -> list[StepRecord]:
    """The step records of a paused execution once resumed: its paused step is retried,
    or its waiting (manual) step approved, and runs next."""
    records = [dict(record) for record in steps]
    if step < len(records) and records[step].get("status") in (StepStatus.PAUSED,
                                                               StepStatus.WAITING):
        records[step]["status"] = StepStatus.PENDING
    return records


# --- an execution's events ---------------------------------------------------------------

class EventKind(StrEnum):
    """What happened to an execution, as its events (`execution_events.kind`) say: written
    by the node or the request that made it happen, in the transaction that did.

    Every attempt is one event written with its outcome once recorded (`attempt`, `step` or
    `error_action`, by what it ran): an event at send time would cost a write per call."""

    SCHEDULED = "scheduled"  # made: by its schedule, or by hand (the actor who asked)
    MISSED = "missed"  # made for an occurrence that passed while nothing ran: its end
    SKIPPED = "skipped"  # made for an occurrence not to run (why, in its detail): its end
    WAITING = "waiting"  # made waiting behind an open run of its job (concurrencyPolicy)
    LEASED = "leased"  # a node took it to make its next attempt
    TAKEN_OVER = "taken_over"  # taken from the node that held it: its heartbeat stopped,
    # or its lease ran out
    HANDED_BACK = "handed_back"  # its node gave it back unsent, for any node to take
    ATTEMPT = "attempt"  # the main action was attempted: its outcome and duration
    STEP = "step"  # a step of a sequence was attempted: its outcome, input and output
    ERROR_ACTION = "error_action"  # the error action was attempted: its outcome
    RETRY_SCHEDULED = "retry_scheduled"  # the attempt failed: the next one, and when
    PAUSED = "paused"  # a sequence waits for `resume`: a manual step, or a failed one
    RESUMED = "resumed"  # resumed by hand (the actor who asked)
    ACCEPTED = "accepted"  # its target answered 202: it waits for the target's callback
    CALLBACK = "callback"  # the target posted its result, for the engine to record
    CANCELED = "canceled"  # ended canceled: by hand (the actor), or as its job stopped
    COMPLETED = "completed"  # ended: the main action succeeded
    FAULTED = "faulted"  # ended: the main action failed for good, and no error action ran
    FAILED = "failed"  # ended failed otherwise: after its error action, or unable to run


# The events that end an execution: one at most per execution, and always kept.
ENDING_EVENTS = frozenset({EventKind.MISSED, EventKind.SKIPPED, EventKind.CANCELED,
                           EventKind.COMPLETED, EventKind.FAULTED, EventKind.FAILED})
# The most events one execution keeps. Past `MAX_EVENTS - 1`, later events are dropped,
# but for its ending, which always fits: a timeline keeps its beginning and its end.
MAX_EVENTS = 200
# The longest text of a message, or of a step's input or output as JSON, an event keeps.
MAX_EVENT_TEXT = 1000


def events_room(kind: str) -> int:
    """How many events an execution may hold, this one included, for an event of `kind` to
    be kept."""
    return MAX_EVENTS if kind in ENDING_EVENTS else MAX_EVENTS - 1


def attempt_kind(action_name: str, step: int | None) -> EventKind:
    """The kind of an attempt's event: of the main action, of a step, of the error action."""
    if action_name != MAIN_ACTION:
        return EventKind.ERROR_ACTION
    return EventKind.ATTEMPT if step is None else EventKind.STEP


def ending_kind(decision: Decision) -> EventKind | None:
    """The event that ends an execution after an attempt that came to `decision`; None if
    it goes on."""
    if not decision.final:
        return None
    if decision.status == ExecutionStatus.COMPLETED:
        return EventKind.COMPLETED
    return EventKind.FAULTED if decision.fault else EventKind.FAILED


def clipped_text(text: str, limit: int = MAX_EVENT_TEXT) -> str:
    """`text`, cut to `limit` characters with an ellipsis if longer."""
    return text if len(text) <= limit else text[:limit - 1] + "…"


def clipped_value(value: Any, limit: int = MAX_EVENT_TEXT) -> Any:
    """A step's input or output as an event keeps it: as it is if its JSON is at most
    `limit` characters, else that JSON as text, clipped."""
    text = json.dumps(value, separators=(",", ":"), default=str)
    return value if len(text) <= limit else clipped_text(text, limit)
