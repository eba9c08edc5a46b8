"""What the services give the API to render: the fields it reads of their records, which
the database's models and rows fit. The API reads resources through these, never through the
database's own types."""

from __future__ import annotations

from datetime import datetime
from typing import Protocol


class StoredJob(Protocol):
    """A job as the API renders it: its stored definition, state and counts; who last set
    its state through the API or the dashboard, when, and the note they gave; and, disabled,
    when it is to be enabled again."""

    id: int
    job_id: str
    definition: str
    state: str
    state_details: str | None
    etag: str
    created_at: datetime
    next_execution_time: datetime | None
    last_execution_time: datetime | None
    execution_count: int
    failure_count: int
    faulted_count: int
    state_note: str | None
    state_changed_by: str | None
    state_changed_at: datetime | None
    disabled_until: datetime | None


class HistoryRecord(Protocol):
    """One entry of a job's history."""

    id: int
    timestamp: datetime
    start_time: datetime
    end_time: datetime | None
    expected_execution_time: datetime | None
    state: str
    status: str
    action_name: str
    message: str
    retry_count: int
    repeat_count: int
    execution_id: str | None
    step_index: int | None
    step_name: str | None


class ExecutionRecord(Protocol):
    """An execution: one run of a job or of an inline definition."""

    id: str
    job_pk: int | None
    trigger: str
    scheduled_time: datetime
    status: str
    revision: int
    action_name: str
    attempt: int
    attempts: int
    step: int | None
    steps: str | None
    next_attempt_at: datetime | None
    node: str | None
    parameters: str | None
    output: str | None
    message: str | None
    start_time: datetime | None
    end_time: datetime | None
    run_on: str | None
    callback_deadline: datetime | None
    callback_result: str | None


class CollectionRecord(Protocol):
    """A job collection with its plan and quota."""

    id: int
    name: str
    label: str
    plan: str
    max_job_count: int | None
    max_job_occurrence: int | None
    max_recurrence_frequency: str | None
    max_recurrence_interval: int | None
    state: str
    lifecycle: str
    last_operation: str
    etag: str
    jobs_disabled: bool
    tags: str | None


class CloudServiceRecord(Protocol):
    """A cloud service."""

    id: int
    name: str
    label: str
    description: str
    geo_region: str
    email: str | None
    etag: str


class OperationRecord(Protocol):
    """An operation, asynchronous or a write call recorded to be polled."""

    id: str
    status: str
    http_status: int | None
    error_code: str | None
    error_message: str | None
    created_at: datetime
    updated_at: datetime


class CertificateRecord(Protocol):
    """A management certificate registered to a subscription."""

    thumbprint: str
    der: bytes
    created_at: datetime
