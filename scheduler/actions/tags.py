"""What every call and message of an execution carries to say which it is: the execution
tag (the same on each attempt, so receivers can de-duplicate), the job, its collection and
the time it was due."""

from __future__ import annotations

import uuid
from collections.abc import Mapping

from scheduler.actions.base import ExecutionContext
from scheduler.domain.durations import format_datetime
from scheduler.domain.outbound import (
    CLIENT_REQUEST_ID,
    COLLECTION_ID,
    EXECUTION_TAG,
    EXPECTED_EXECUTION_TIME,
    JOB_ID,
    is_identification_header,
)


def identification(context: ExecutionContext) -> dict[str, str]:
    """Azure Scheduler's identification headers of one attempt (a new client request id
    each time)."""
    return {
        JOB_ID: context.job_id,
        COLLECTION_ID: context.collection,
        EXPECTED_EXECUTION_TIME: format_datetime(context.scheduled_time),
        EXECUTION_TAG: context.execution_id,
        CLIENT_REQUEST_ID: str(uuid.uuid4()),
    }


def with_identification(headers: Mapping[str, str], context: ExecutionContext
                        ) -> dict[str, str]:
    """A job's headers with the attempt's identification, and without any identification
    header of the job's own in another letter case: a job stored before such names were
    refused must not send a forged one beside the real one."""
    own = {name: value for name, value in headers.items()
           if not is_identification_header(name)}
    own.update(identification(context))
    return own
