"""What the client prints: aligned tables and field lists for people, JSON for scripts."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

MESSAGE_WIDTH = 100  # a history message is cut here in a table; `--output json` has it whole


def as_json(document: Any) -> str:
    """A document as indented JSON, for `jq` and for people who want everything."""
    return json.dumps(document, indent=2, ensure_ascii=False)


def cell(value: Any) -> str:
    """One value as table text: `-` for nothing, lists joined by commas."""
    if value is None or value == "":
        return "-"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        return ",".join(cell(item) for item in value) or "-"
    return " ".join(str(value).split())  # one line, whatever the value held


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Columns aligned under their headers, two spaces apart; the last is not padded."""
    texts = [[cell(value) for value in row] for row in rows]
    widths = [max([len(h), *(len(row[i]) for row in texts)]) for i, h in enumerate(headers)]
    lines = [list(headers), *texts]
    return "\n".join("  ".join(value.ljust(width) for value, width in zip(line, widths,
                                                                            strict=True)).rstrip()
                     for line in lines)


def fields(pairs: Sequence[tuple[str, Any]]) -> str:
    """`name: value` lines, the values aligned."""
    width = max((len(name) for name, _ in pairs), default=0) + 1
    return "\n".join(f"{(name + ':').ljust(width)}  {cell(value)}" for name, value in pairs)


# --- jobs ----------------------------------------------------------------------------------

def recurrence_text(recurrence: Mapping[str, Any] | None) -> str:
    """A recurrence in a few words: `once`, `every 5 minutes`, with its schedule and limits."""
    if not recurrence:
        return "once"
    interval = recurrence.get("interval") or 1
    frequency = str(recurrence.get("frequency") or "?")
    parts = [f"every {interval} {frequency}{'s' if interval != 1 else ''}"]
    schedule = recurrence.get("schedule") or {}
    for key in ("monthDays", "weekDays", "hours", "minutes"):
        if schedule.get(key):
            parts.append(f"{key} {cell(schedule[key])}")
    for occurrence in schedule.get("monthlyOccurrences") or []:
        parts.append(f"{occurrence.get('occurrence')} {occurrence.get('day')}")
    if recurrence.get("count"):
        parts.append(f"{recurrence['count']} times")
    if recurrence.get("endTime"):
        parts.append(f"until {recurrence['endTime']}")
    return "; ".join(parts)


def target_text(action: Mapping[str, Any] | None) -> str:
    """Where an action goes: the request's method and URI, or the queue or broker."""
    action = action or {}
    request = action.get("request")
    if isinstance(request, Mapping):
        return f"{request.get('method', 'GET')} {request.get('uri', '?')}"
    for key, place in (("queueMessage", "queueName"), ("serviceBusQueueMessage", "queueName"),
                       ("serviceBusTopicMessage", "topicPath"), ("amqpMessage", "exchange"),
                       ("redisMessage", "stream")):
        message = action.get(key)
        if isinstance(message, Mapping):
            return str(message.get(place) or "?")
    if action.get("steps"):
        return f"{len(action['steps'])} steps"
    return "-"


def _counts(status: Mapping[str, Any]) -> str:
    return f"{status.get('executionCount', 0)}/{status.get('failureCount', 0)}"


def jobs_table(jobs: Sequence[Mapping[str, Any]]) -> str:
    """The table of `jobs list`."""
    rows = []
    for job in jobs:
        status = job.get("status") or {}
        rows.append((job.get("id"), job.get("state"), (job.get("action") or {}).get("type"),
                     recurrence_text(job.get("recurrence")), status.get("nextExecutionTime"),
                     status.get("lastExecutionTime"), _counts(status)))
    return table(("ID", "STATE", "ACTION", "RECURRENCE", "NEXT RUN", "LAST RUN",
                  "RUNS/FAILED"), rows)


def job_fields(job: Mapping[str, Any]) -> str:
    """The field list of `jobs show`, `create` and `update`."""
    action = job.get("action") or {}
    status = job.get("status") or {}
    error_action = action.get("errorAction")
    retry = action.get("retryPolicy") or {}
    return fields([
        ("id", job.get("id")), ("state", job.get("state")),
        ("action", action.get("type")), ("target", target_text(action)),
        ("error action", error_action.get("type") if isinstance(error_action, Mapping) else None),
        ("retry", " ".join(cell(retry.get(key)) for key in
                           ("retryType", "retryCount", "retryInterval") if key in retry)),
        ("start time", job.get("startTime")),
        ("recurrence", recurrence_text(job.get("recurrence"))),
        ("next run", status.get("nextExecutionTime")),
        ("last run", status.get("lastExecutionTime")),
        ("executions", status.get("executionCount")),
        ("failures", status.get("failureCount")),
        ("faulted", status.get("faultedCount")),
    ])


def _first_line(message: Any) -> str:
    text = cell(message)
    return text if len(text) <= MESSAGE_WIDTH else text[:MESSAGE_WIDTH - 3] + "..."


def history_table(entries: Sequence[Mapping[str, Any]]) -> str:
    """The table of `jobs history`."""
    return table(("TIME", "STATUS", "ACTION", "RETRY", "MESSAGE"), [
        (entry.get("startTime") or entry.get("timestamp"), entry.get("status"),
         entry.get("actionName"), entry.get("retryCount"), _first_line(entry.get("message")))
        for entry in entries])


def occurrences_table(times: Sequence[str]) -> str:
    """The table of `jobs occurrences`."""
    return table(("NEXT OCCURRENCES",), [(moment,) for moment in times])


def execution_fields(execution: Mapping[str, Any]) -> str:
    """The field list of `jobs run`."""
    output = execution.get("outputParameters") or {}
    pairs: list[tuple[str, Any]] = [
        ("execution", execution.get("id")), ("job", execution.get("jobId")),
        ("trigger", execution.get("trigger")), ("status", execution.get("status")),
        ("scheduled", execution.get("scheduledTime")),
        ("started", execution.get("startTime")), ("ended", execution.get("endTime")),
        ("node", execution.get("node")), ("attempts", execution.get("attempts")),
    ]
    if "statusCode" in output:
        pairs.append(("answer", f"{output['statusCode']} {output.get('reasonPhrase') or ''}"))
    if execution.get("message"):
        pairs.append(("message", _first_line(execution["message"])))
    return fields(pairs)


# --- job collections -----------------------------------------------------------------------

def _max_recurrence(collection: Mapping[str, Any]) -> str:
    limit = collection.get("maxRecurrence") or {}
    if not limit.get("frequency"):
        return "-"
    return f"{limit.get('interval') or 1} {str(limit['frequency']).lower()}"


def collections_table(found: Sequence[Mapping[str, Any]]) -> str:
    """The table of `collections list`."""
    return table(("CLOUD SERVICE", "NAME", "PLAN", "STATE", "REGION", "MAX JOBS",
                  "MAX RECURRENCE"), [
        (c.get("cloudService"), c.get("name"), c.get("plan"), c.get("state"), c.get("region"),
         c.get("maxJobCount"), _max_recurrence(c)) for c in found])


def collection_fields(collection: Mapping[str, Any]) -> str:
    """The field list of `collections create`."""
    return fields([
        ("cloud service", collection.get("cloudService")), ("name", collection.get("name")),
        ("plan", collection.get("plan")), ("state", collection.get("state")),
        ("region", collection.get("region")), ("max jobs", collection.get("maxJobCount")),
        ("max recurrence", _max_recurrence(collection)),
    ])
