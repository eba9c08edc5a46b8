"""What every call and message of an execution carries to say which it is: the execution
tag (the same on each attempt, so receivers can de-duplicate), the job, its collection and
the time it was due."""

from __future__ import annotations

import uuid

from scheduler.actions.base import ExecutionContext
from scheduler.domain.durations import format_datetime


def identification(context: ExecutionContext) -> dict[str, str]:
    """Azure Scheduler's identification headers of one attempt (a new client request id
    each time)."""
    return {
        "x-ms-scheduler-jobid": context.job_id,
        "x-ms-scheduler-jobcollectionid": context.collection,
        "x-ms-scheduler-expected-execution-time": format_datetime(context.scheduled_time),
        "x-ms-execution-tag": context.execution_id,
        "x-ms-client-request-id": str(uuid.uuid4()),
    }
