"""The states of a job, a job collection and a cloud service, and the statuses of an
execution: one vocabulary for every layer."""

from __future__ import annotations

from enum import StrEnum


class JobState(StrEnum):
    """A job's state; only `enabled` jobs fire."""

    ENABLED = "enabled"
    DISABLED = "disabled"
    COMPLETED = "completed"
    FAULTED = "faulted"


SETTABLE_JOB_STATES = (JobState.ENABLED, JobState.DISABLED)
FINAL_JOB_STATES = (JobState.COMPLETED, JobState.FAULTED)


class ExecutionStatus(StrEnum):
    """Where one execution (an occurrence, with its retries and error action) stands."""

    PENDING = "pending"  # waiting for its next attempt, or for a node to claim it
    RUNNING = "running"  # leased to a node, its attempt readied or in flight
    PAUSED = "paused"  # a sequence waiting for `resume`: a failed step, or a manual one
    COMPLETED = "completed"
    FAILED = "failed"
    MISSED = "missed"  # due while the service was down; never attempted
    CANCELED = "canceled"
    SKIPPED = "skipped"  # not to run (an exclusion calendar, the job's overlap policy)
    WAITING = "waiting"  # behind an open run of its job, until it ends (concurrencyPolicy)


OPEN_STATUSES = (ExecutionStatus.PENDING, ExecutionStatus.RUNNING, ExecutionStatus.PAUSED,
                 ExecutionStatus.WAITING)
# The open executions under way, or due to be: those a waiting one waits behind.
ACTIVE_STATUSES = (ExecutionStatus.PENDING, ExecutionStatus.RUNNING, ExecutionStatus.PAUSED)
FINAL_STATUSES = (ExecutionStatus.COMPLETED, ExecutionStatus.FAILED, ExecutionStatus.MISSED,
                  ExecutionStatus.CANCELED, ExecutionStatus.SKIPPED)


class StepStatus(StrEnum):
    """Where one step of a sequence stands."""

    PENDING = "pending"  # to run next, or to be retried
    WAITING = "waiting"  # a manual step, waiting for `resume` before it runs
    COMPLETED = "completed"
    FAILED = "failed"  # failed for good
    PAUSED = "paused"  # failed, its execution paused until `resume` retries it


class Trigger(StrEnum):
    """What made an execution: the job's schedule, a request (run now, inline), or a
    backfill of past occurrences."""

    SCHEDULE = "schedule"
    MANUAL = "manual"
    BACKFILL = "backfill"


class CollectionState(StrEnum):
    """A job collection's state, as its client sets it: only a started one runs anything."""

    STARTED = "Started"
    SUSPENDED = "Suspended"  # nothing of it runs, and nothing missed is replayed


class Lifecycle(StrEnum):
    """Where a cloud service or a job collection stands in being made, changed or deleted;
    nothing runs in one being deleted."""

    CREATING = "Creating"
    ACTIVE = "Active"
    UPDATING = "Updating"
    DELETING = "Deleting"
