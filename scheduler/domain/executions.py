"""What happens to an execution after each attempt: the one transition function."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Protocol

from scheduler.domain.retry import RetryPolicy
from scheduler.domain.states import ExecutionStatus, JobState

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
    attempt: int  # 0 for the first attempt of the action, then 1 per retry
    has_error_action: bool


class Next(StrEnum):
    """The kinds of what comes after an attempt."""

    COMPLETED = "completed"  # the main action succeeded
    FAILED = "failed"  # no retry left, no error action (or the error action ran)
    RETRY = "retry"  # the same action again, at `Decision.at`
    ERROR_ACTION = "error action"  # the main action failed for good: its error action, now


@dataclass(frozen=True, slots=True)
class Decision:
    """What happens next to an execution, and what its attempt counts for its job."""

    next: Next
    status: ExecutionStatus
    action_name: str
    attempt: int
    at: datetime | None = None  # when the next attempt is due
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
    """
    name, attempt = execution.action_name, execution.attempt
    if outcome.success:
        status = ExecutionStatus.COMPLETED if name == MAIN_ACTION else ExecutionStatus.FAILED
        return Decision(Next(status.value), status, name, attempt, ended=now)
    delay = policy.delay_before(attempt + 1)
    if delay is not None:
        return Decision(Next.RETRY, ExecutionStatus.PENDING, name, attempt + 1, at=now + delay,
                        failure=True)
    fault = name == MAIN_ACTION
    if fault and execution.has_error_action:
        return Decision(Next.ERROR_ACTION, ExecutionStatus.PENDING, ERROR_ACTION, 0, at=now,
                        failure=True, fault=True)
    return Decision(Next.FAILED, ExecutionStatus.FAILED, name, attempt, ended=now,
                    failure=True, fault=fault)


def job_state_after(state: str, next_fire: datetime | None, still_open: int,
                    ended: ExecutionStatus) -> JobState | None:
    """A job's new state once one of its executions ended as `ended`, `still_open` being
    left open: a job with no occurrence and no execution left ends completed or faulted."""
    if next_fire is not None or still_open > 0:
        return None
    if state not in (JobState.ENABLED, JobState.DISABLED):
        return None
    return JobState.COMPLETED if ended == ExecutionStatus.COMPLETED else JobState.FAULTED
