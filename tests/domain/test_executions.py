"""`decide`: what comes after each attempt, as a table."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest

from scheduler.domain.durations import Duration
from scheduler.domain.executions import (
    ERROR_ACTION,
    MAIN_ACTION,
    Decision,
    ExecutionPoint,
    Next,
    StepAttempt,
    decide,
    job_state_after,
    resumed_steps,
    steps_after,
    waiting_step,
)
from scheduler.domain.retry import RetryPolicy
from scheduler.domain.states import ExecutionStatus, JobState, StepStatus

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
TWICE = RetryPolicy("fixed", Duration.parse("PT30S"), 2)
NEVER = RetryPolicy("none", Duration.parse("PT30S"), 0)
DOUBLING = RetryPolicy("exponential", Duration.parse("PT10S"), 5, Duration.parse("PT60S"))


@dataclass(frozen=True)
class Result:
    """An attempt's outcome, as much of it as `decide` reads."""

    success: bool


OK, BAD = Result(True), Result(False)
S = ExecutionStatus


@pytest.mark.parametrize(("point", "outcome", "policy", "expected"), [
    # The main action succeeds: done, whatever its attempt or error action.
    (ExecutionPoint(MAIN_ACTION, 0, True), OK, TWICE,
     Decision(Next.COMPLETED, S.COMPLETED, MAIN_ACTION, 0, ended=NOW)),
    (ExecutionPoint(MAIN_ACTION, 2, False), OK, TWICE,
     Decision(Next.COMPLETED, S.COMPLETED, MAIN_ACTION, 2, ended=NOW)),
    # It fails with retries left: the same action again after the policy's wait.
    (ExecutionPoint(MAIN_ACTION, 0, True), BAD, TWICE,
     Decision(Next.RETRY, S.PENDING, MAIN_ACTION, 1, at=NOW + timedelta(seconds=30),
              failure=True)),
    (ExecutionPoint(MAIN_ACTION, 1, False), BAD, TWICE,
     Decision(Next.RETRY, S.PENDING, MAIN_ACTION, 2, at=NOW + timedelta(seconds=30),
              failure=True)),
    (ExecutionPoint(MAIN_ACTION, 2, False), BAD, DOUBLING,
     Decision(Next.RETRY, S.PENDING, MAIN_ACTION, 3, at=NOW + timedelta(seconds=40),
              failure=True)),
    (ExecutionPoint(MAIN_ACTION, 4, False), BAD, DOUBLING,
     Decision(Next.RETRY, S.PENDING, MAIN_ACTION, 5, at=NOW + timedelta(seconds=60),
              failure=True)),
    # Retries used up: the error action at once, or failed with none.
    (ExecutionPoint(MAIN_ACTION, 2, True), BAD, TWICE,
     Decision(Next.ERROR_ACTION, S.PENDING, ERROR_ACTION, 0, at=NOW, failure=True,
              fault=True)),
    (ExecutionPoint(MAIN_ACTION, 0, True), BAD, NEVER,
     Decision(Next.ERROR_ACTION, S.PENDING, ERROR_ACTION, 0, at=NOW, failure=True,
              fault=True)),
    (ExecutionPoint(MAIN_ACTION, 2, False), BAD, TWICE,
     Decision(Next.FAILED, S.FAILED, MAIN_ACTION, 2, ended=NOW, failure=True, fault=True)),
    # The error action: retried by its own policy; the execution has failed either way.
    (ExecutionPoint(ERROR_ACTION, 0, True), OK, TWICE,
     Decision(Next.FAILED, S.FAILED, ERROR_ACTION, 0, ended=NOW)),
    (ExecutionPoint(ERROR_ACTION, 0, True), BAD, TWICE,
     Decision(Next.RETRY, S.PENDING, ERROR_ACTION, 1, at=NOW + timedelta(seconds=30),
              failure=True)),
    (ExecutionPoint(ERROR_ACTION, 2, True), BAD, TWICE,
     Decision(Next.FAILED, S.FAILED, ERROR_ACTION, 2, ended=NOW, failure=True)),
])
def test_decide_says_what_comes_after_an_attempt(
    point: ExecutionPoint, outcome: Result, policy: RetryPolicy, expected: Decision
) -> None:
    decision = decide(point, outcome, policy, NOW)
    assert decision == expected
    assert decision.final == (expected.ended is not None)


@pytest.mark.parametrize(("state", "next_fire", "still_open", "ended", "expected"), [
    (JobState.ENABLED, None, 0, S.COMPLETED, JobState.COMPLETED),
    (JobState.DISABLED, None, 0, S.FAILED, JobState.FAULTED),
    (JobState.ENABLED, None, 1, S.COMPLETED, None),  # another execution is still open
    (JobState.ENABLED, NOW, 0, S.COMPLETED, None),  # occurrences are still to come
    (JobState.COMPLETED, None, 0, S.FAILED, None),  # already final
    (JobState.FAULTED, None, 0, S.COMPLETED, None),
])
def test_a_job_ends_once_nothing_is_left_to_run(
    state: JobState, next_fire: datetime | None, still_open: int, ended: ExecutionStatus,
    expected: JobState | None,
) -> None:
    assert job_state_after(state, next_fire, still_open, ended) == expected


# In a sequence of three steps: (step, steps, pause_on_failure, next_manual).
def _in_sequence(step: int, attempt: int = 0, *, pause: bool = False, next_manual: bool = False,
                 error_action: bool = False) -> ExecutionPoint:
    return ExecutionPoint(MAIN_ACTION, attempt, error_action, step, 3, pause, next_manual)


@pytest.mark.parametrize(("point", "outcome", "policy", "expected"), [
    # A step succeeds: the next one at once, its first attempt.
    (_in_sequence(0, 2), OK, TWICE,
     Decision(Next.NEXT_STEP, S.PENDING, MAIN_ACTION, 0, at=NOW, step=1)),
    # ... paused when the next one is manual.
    (_in_sequence(1, next_manual=True), OK, TWICE,
     Decision(Next.NEXT_STEP, S.PAUSED, MAIN_ACTION, 0, step=2)),
    # The last step succeeds: the execution completes.
    (_in_sequence(2), OK, TWICE,
     Decision(Next.COMPLETED, S.COMPLETED, MAIN_ACTION, 0, ended=NOW, step=2)),
    # A step fails with retries left: the same step again, by its policy.
    (_in_sequence(1, pause=True), BAD, TWICE,
     Decision(Next.RETRY, S.PENDING, MAIN_ACTION, 1, at=NOW + timedelta(seconds=30), step=1,
              failure=True)),
    # It fails for good with pauseOnFailure: paused on that step, not yet a fault.
    (_in_sequence(1, 2, pause=True, error_action=True), BAD, TWICE,
     Decision(Next.PAUSED, S.PAUSED, MAIN_ACTION, 2, step=1, failure=True)),
    # ... without it: the main action has failed, as a single action would.
    (_in_sequence(1, 2, error_action=True), BAD, TWICE,
     Decision(Next.ERROR_ACTION, S.PENDING, ERROR_ACTION, 0, at=NOW, failure=True,
              fault=True)),
    (_in_sequence(0, 0), BAD, NEVER,
     Decision(Next.FAILED, S.FAILED, MAIN_ACTION, 0, ended=NOW, step=0, failure=True,
              fault=True)),
])
def test_decide_moves_a_sequence_step_by_step(
    point: ExecutionPoint, outcome: Result, policy: RetryPolicy, expected: Decision
) -> None:
    assert decide(point, outcome, policy, NOW) == expected


def _attempt(message: str) -> StepAttempt:
    return StepAttempt({"uri": "u"}, {"statusCode": 200}, message, "t0", "t1")


def test_step_records_follow_each_decision() -> None:
    names = ["fetch", "approve", "post"]
    moved = decide(_in_sequence(0, next_manual=True), OK, TWICE, NOW)
    steps = steps_after([], moved, 0, names, True, _attempt("ok"))
    assert [(s["name"], s["status"], s["tries"]) for s in steps] == [
        ("fetch", StepStatus.COMPLETED, 1), ("approve", StepStatus.WAITING, 0)]
    assert steps[0]["input"] == {"uri": "u"} and steps[0]["output"] == {"statusCode": 200}
    steps = resumed_steps(steps, 1)
    assert steps[1]["status"] == StepStatus.PENDING
    retry = decide(_in_sequence(1), BAD, TWICE, NOW)
    steps = steps_after(steps, retry, 1, names, False, _attempt("no"))
    assert (steps[1]["status"], steps[1]["tries"]) == (StepStatus.PENDING, 1)
    paused = decide(_in_sequence(1, 2, pause=True), BAD, TWICE, NOW)
    steps = steps_after(steps, paused, 1, names, False, _attempt("no"))
    assert (steps[1]["status"], steps[1]["tries"], steps[1]["message"]) == (
        StepStatus.PAUSED, 2, "no")
    assert steps[1]["start_time"] == "t0"


def test_a_sequence_whose_first_step_is_manual_starts_waiting() -> None:
    assert waiting_step("approve") == {"name": "approve", "status": StepStatus.WAITING,
                                       "tries": 0}
