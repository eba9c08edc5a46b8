"""The JSON execution document, and the bodies that start, inline-run and cancel one."""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping
from datetime import datetime
from typing import Any, NamedTuple

from scheduler.api.schemas.jobs import parse_datetime, parse_job, parse_parameters, parse_run_on
from scheduler.domain import InvalidField
from scheduler.domain.durations import format_datetime
from scheduler.domain.jobs import JobSpec
from scheduler.domain.nodes import read_run_on, waits_for_nodes
from scheduler.domain.overlap import Overlap, validate_overlap
from scheduler.domain.states import ExecutionStatus
from scheduler.services.backfill import BackfillRequest
from scheduler.services.records import ExecutionRecord
from scheduler.settings import OutboundSettings

EXECUTION_STATUSES = tuple(status.value for status in ExecutionStatus)
# An execution in these waits for a node when none it may run on is alive (a paused one
# waits for `resume`).
WAITING_STATUSES = (ExecutionStatus.PENDING, ExecutionStatus.RUNNING)
_STEP_FIELDS = (("name", "name"), ("status", "status"), ("tries", "tries"),
                ("input", "input"), ("output", "output"), ("message", "message"),
                ("start_time", "startTime"), ("end_time", "endTime"))


class RunRequest(NamedTuple):
    """What a run-now request asks: parameters over the job's own, the engine nodes that
    alone may run it instead of those its job names (none: its job's), and the overlap
    policy it follows in place of its job's (None: its job's)."""

    parameters: dict[str, Any]
    run_on: tuple[str, ...] = ()
    overlap: Overlap | None = None


def execution_json(execution: ExecutionRecord, job_id: str | None,
                   live_names: Collection[str] = ()) -> dict[str, Any]:
    """An execution as the API shows it; with `runOn` when only some engine nodes may run
    it, and whether it waits for one of them (none is among `live_names`, the names of the
    live nodes)."""
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
    run_on = read_run_on(execution.run_on)
    if run_on:
        document["runOn"] = list(run_on)
        document["waitingForNodes"] = (execution.status in WAITING_STATUSES
                                       and waits_for_nodes(run_on, live_names))
    if execution.message is not None:
        document["message"] = execution.message
    if execution.callback_deadline is not None and execution.status == ExecutionStatus.RUNNING:
        # Its target accepted the call: it waits for the result until then, or has it.
        if execution.callback_result is None:
            document["callbackDeadline"] = format_datetime(execution.callback_deadline)
        else:
            document["callbackReceived"] = True
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


def parse_run(document: Any) -> RunRequest:
    """The body of a run-now request: `{"parameters": {...}, "overlap": "skip", "runOn":
    [...]}`, all of it optional."""
    if document is None:
        return RunRequest({})
    body = _object(document, {"parameters", "overlap", "runOn"})
    parameters = {} if body.get("parameters") is None else parse_parameters(body["parameters"])
    overlap = None if body.get("overlap") is None else validate_overlap(body["overlap"],
                                                                         "overlap")
    run_on = () if body.get("runOn") is None else tuple(parse_run_on(body["runOn"]))
    return RunRequest(parameters, run_on, overlap)


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
    """The body of an inline run: `{"action": {...}, "parameters": {...}, "runOn": [...]}`,
    validated as a job's action, parameters and nodes are, by the rules of `outbound`."""
    body = _object(document, {"action", "parameters", "runOn"})
    return parse_job(body, now=now, brokers=brokers,
                     private_networks=outbound.allow_private_networks,
                     longest_timeout=outbound.longest_timeout)


def parse_cancel(document: Any) -> None:
    """The body of a change to an execution: only `{"status": "canceled"}` is allowed."""
    body = _object(document, {"status"})
    status = body.get("status")
    if not isinstance(status, str) or status.lower() != ExecutionStatus.CANCELED:
        raise InvalidField("status", "can only be set to canceled")
