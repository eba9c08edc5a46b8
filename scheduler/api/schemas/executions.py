"""The JSON execution document, and the bodies that start, inline-run and cancel one."""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from scheduler.api.schemas.jobs import parse_datetime, parse_job, parse_parameters
from scheduler.domain import InvalidField
from scheduler.domain.durations import format_datetime
from scheduler.domain.jobs import JobSpec
from scheduler.domain.overlap import Overlap, validate_overlap
from scheduler.domain.states import ExecutionStatus
from scheduler.services.backfill import BackfillRequest
from scheduler.services.records import ExecutionRecord
from scheduler.settings import OutboundSettings

EXECUTION_STATUSES = tuple(status.value for status in ExecutionStatus)
_STEP_FIELDS = (("name", "name"), ("status", "status"), ("tries", "tries"),
                ("input", "input"), ("output", "output"), ("message", "message"),
                ("start_time", "startTime"), ("end_time", "endTime"))


def execution_json(execution: ExecutionRecord, job_id: str | None) -> dict[str, Any]:
    """An execution as the API shows it."""
    document: dict[str, Any] = {
        "id": execution.id, "jobId": job_id, "trigger": execution.trigger,
        "scheduledTime": format_datetime(execution.scheduled_time),
        "status": execution.status,
    }
    for key, moment in (("startTime", execution.start_time), ("endTime", execution.end_time),
                        ("nextAttemptTime", execution.next_attempt_at)):
        if moment is not None and (key != "nextAttemptTime"
                                   or execution.status == ExecutionStatus.PENDING):
            document[key] = format_datetime(moment)
    document.update({
        "node": execution.node,
        "actionName": execution.action_name,
        "attempts": execution.attempts,
        "retryCount": execution.attempt,
        "parameters": json.loads(execution.parameters or "{}"),
        "outputParameters": json.loads(execution.output) if execution.output else {},
    })
    if execution.message is not None:
        document["message"] = execution.message
    if execution.steps is not None:
        document["currentStep"] = execution.step or 0
        document["steps"] = [{wire: step[key] for key, wire in _STEP_FIELDS if key in step}
                             for step in json.loads(execution.steps)]
    return document


def _object(document: Any, allowed: Collection[str]) -> dict[str, Any]:
    if not isinstance(document, dict):
        raise InvalidField("", "the body must be a JSON object")
    for key in document:
        if key not in allowed:
            raise InvalidField(key, "is not a known field")
    return document


@dataclass(frozen=True, slots=True)
class RunRequest:
    """What a run-now request asks: parameters over the job's own, and the overlap policy
    the run follows in place of the job's (None: the job's)."""

    parameters: dict[str, Any] = field(default_factory=dict)
    overlap: Overlap | None = None


def parse_run(document: Any) -> RunRequest:
    """The body of a run-now request: `{"parameters": {...}, "overlap": "skip"}`, all of it
    optional."""
    if document is None:
        return RunRequest()
    body = _object(document, {"parameters", "overlap"})
    parameters = {} if body.get("parameters") is None else parse_parameters(body["parameters"])
    overlap = None if body.get("overlap") is None else validate_overlap(body["overlap"],
                                                                         "overlap")
    return RunRequest(parameters, overlap)


def parse_backfill(document: Any) -> BackfillRequest:
    """The body of a backfill: `{"start": time, "end": time, "onlyMissed": false,
    "overlap": "bufferAll"}`, `start` and `end` required."""
    body = _object(document, {"start", "end", "onlyMissed", "overlap"})
    for name in ("start", "end"):
        if body.get(name) is None:
            raise InvalidField(name, "is required")
    only_missed = body.get("onlyMissed", False)
    if not isinstance(only_missed, bool):
        raise InvalidField("onlyMissed", "must be true or false")
    overlap = None if body.get("overlap") is None else validate_overlap(body["overlap"],
                                                                         "overlap")
    return BackfillRequest(parse_datetime(body["start"], "start"),
                           parse_datetime(body["end"], "end"), only_missed, overlap)


def parse_inline(document: Any, now: datetime, outbound: OutboundSettings,
                 brokers: Mapping[str, str]) -> JobSpec:
    """The body of an inline run: `{"action": {...}, "parameters": {...}}`, validated as a
    job's action and parameters are, by the rules of `outbound`."""
    body = _object(document, {"action", "parameters"})
    return parse_job(body, now=now, brokers=brokers,
                     private_networks=outbound.allow_private_networks,
                     longest_timeout=outbound.longest_timeout)


def parse_cancel(document: Any) -> None:
    """The body of a change to an execution: only `{"status": "canceled"}` is allowed."""
    body = _object(document, {"status"})
    status = body.get("status")
    if not isinstance(status, str) or status.lower() != ExecutionStatus.CANCELED:
        raise InvalidField("status", "can only be set to canceled")
