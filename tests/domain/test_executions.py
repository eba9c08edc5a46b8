"""`decide`: what comes after each attempt, as a table."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest

from scheduler.domain.executions import (
    ERROR_ACTION,
    MAIN_ACTION,
    Decision,
    ExecutionPoint,
    Next,
    decide,
    job_state_after,
)
from scheduler.domain.retry import RetryPolicy
from scheduler.domain.states import ExecutionStatus, JobState

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
TWICE = RetryPolicy("fixed", timedelta(seconds=30), 2)
NEVER = RetryPolicy("none", timedelta(seconds=30), 0)
DOUBLING = RetryPolicy("exponential", timedelta(seconds=10), 5, timedelta(seconds=60))


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
