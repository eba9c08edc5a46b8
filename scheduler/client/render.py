"""What the client prints: aligned tables and field lists for people, JSON for scripts.

Much of it was written by others (a target's answer in a history message, a job author's
step names), so no control character reaches the terminal as itself: a terminal would act on
it (`ESC [` recolours or moves the cursor, CR goes back over what was printed, BEL rings).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

MESSAGE_WIDTH = 100  # a history message is cut here in a table; `--output json` has it whole
# The actions that send a message, by the key of their message in an action.
MESSAGE_KEYS = ("queueMessage", "serviceBusQueueMessage", "serviceBusTopicMessage",
                "amqpMessage", "redisMessage")
SHORT_ID = 8  # digits of an execution id a history table shows
# C0 controls, DEL and C1 controls (among them CSI, U+009B, which some terminals read as ESC [).
CONTROLS = re.compile(r"[\x00-\x1f\x7f-\x9f]")
# JSON's own escapes cover C0 only; `ensure_ascii=False` leaves DEL and C1 as they are.
JSON_UNESCAPED_CONTROLS = re.compile(r"[\x7f-\x9f]")
NAMED_ESCAPES = {"\t": "\\t", "\n": "\\n", "\r": "\\r"}
# The end of a text cut inside one of the escapes above (`\x1` of `\x1b`).
CUT_ESCAPE = re.compile(r"\\(x[0-9a-f]?)?$")


def escape_controls(text: str, keep: str = "") -> str:
    r"""`text` with each control character but those in `keep` written as an escape (`\x1b`,
    `\r`, `\x9b`), so that a terminal shows it instead of acting on it."""
    def escaped(match: re.Match[str]) -> str:
        char = match.group()
        return char if char in keep else NAMED_ESCAPES.get(char, f"\\x{ord(char):02x}")
    return CONTROLS.sub(escaped, text)


def as_json(document: Any) -> str:
    """A document as indented JSON, for `jq` and for people who want everything; every
    control character in it is a `\\u` escape."""
    text = json.dumps(document, indent=2, ensure_ascii=False)
    return JSON_UNESCAPED_CONTROLS.sub(lambda match: f"\\u{ord(match.group()):04x}", text)


def cell(value: Any) -> str:
    """One value as table text, on one line and with control characters escaped: `-` for
    nothing, lists joined by commas."""
    if value is None or value == "":
        return "-"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        return ",".join(cell(item) for item in value) or "-"
    # Line breaks and tabs become single spaces (the row stays one line); a lone CR, which
    # would go back over the row, is shown.
    text = escape_controls(str(value).replace("\r\n", "\n"), keep="\t\n")
    return " ".join(text.split())


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
    parts = [f"cron {recurrence['cron']}" if recurrence.get("cron") else
             f"every {interval} {frequency}{'s' if interval != 1 else ''}"]
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
    if recurrence.get("jitter"):
        parts.append(f"jitter {recurrence['jitter']}")
    return "; ".join(parts)


def target_text(action: Mapping[str, Any] | None) -> str:
    """Where an action goes: the request's method and URI, or the queue or broker."""
    action = action or {}
    request = action.get("request")
    if isinstance(request, Mapping):
        return f"{request.get('method', 'GET')} {request.get('uri', '?')}"
    for key, place in zip(MESSAGE_KEYS, ("queueName", "queueName", "topicPath", "exchange",
                                         "stream"), strict=True):
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
        rows.append((job.get("id"), state_text(job), (job.get("action") or {}).get("type"),
                     recurrence_text(job.get("recurrence")), status.get("nextExecutionTime"),
                     status.get("lastExecutionTime"), _counts(status)))
    return table(("ID", "STATE", "ACTION", "RECURRENCE", "NEXT RUN", "LAST RUN",
                  "RUNS/FAILED"), rows)


def state_text(job: Mapping[str, Any]) -> Any:
    """A job's state; a disabled one's with the time it is enabled again, if it has one."""
    until = job.get("disabledUntil")
    return f"{job.get('state')} until {until}" if until else job.get("state")


def job_fields(job: Mapping[str, Any]) -> str:
    """The field list of `jobs show`, `create` and `update`: its scheduling policies among
    them, each only when the job sets it (a job disabled until a time says so in its state,
    its cron expression and jitter in its recurrence)."""
    action = job.get("action") or {}
    status = job.get("status") or {}
    error_action = action.get("errorAction")
    retry = action.get("retryPolicy") or {}
    return fields([
        ("id", job.get("id")), ("state", state_text(job)),
        ("action", action.get("type")), ("target", target_text(action)),
        ("error action", error_action.get("type") if isinstance(error_action, Mapping) else None),
        ("retry", " ".join(cell(retry.get(key)) for key in
                           ("retryType", "retryCount", "retryInterval") if key in retry)),
        ("start time", job.get("startTime")),
        ("recurrence", recurrence_text(job.get("recurrence"))),
        *policy_fields(job),
        ("next run", status.get("nextExecutionTime")),
        ("last run", status.get("lastExecutionTime")),
        ("executions", status.get("executionCount")),
        ("failures", status.get("failureCount")),
        ("faulted", status.get("faultedCount")),
    ])


def policy_fields(job: Mapping[str, Any]) -> list[tuple[str, Any]]:
    """The scheduling policies a job sets, as fields: its overlap policy, catch-up, the
    calendars it skips the days of, its action's timeout, and how its outcome comes."""
    recurrence = job.get("recurrence") or {}
    pairs: list[tuple[str, Any]] = [
        ("concurrency", job.get("concurrencyPolicy")),
        ("catch-up", catch_up_text(job.get("catchUp"))),
        ("excluded calendars", recurrence.get("excludeCalendars")
            if isinstance(recurrence, Mapping) else None),
        ("timeout", timeout_text(job.get("action"))),
        ("completion", completion_text(job.get("action"))),
        ("alerts", alerts_text(job.get("alerts"))),
    ]
    return [(name, value) for name, value in pairs if value]


def alerts_text(rules: Any) -> str | None:
    """Alert rules in a few words: `failed, recovered to ops; after 3 in a row`."""
    if not isinstance(rules, Mapping):
        return None
    events = rules.get("on") or []
    if not events:
        return "off"
    words = f"{', '.join(map(str, events))} to {', '.join(map(str, rules.get('channels') or []))}"
    if rules.get("afterConsecutive"):
        words += f"; after {rules.get('afterConsecutive')} in a row"
    if rules.get("realert"):
        words += f"; again every {rules.get('realert')}"
    return words


def completion_text(action: Any) -> str | None:
    """How an HTTP action's outcome comes, in words: in the answer (`sync`, the default), or
    posted back by its target (`callback within PT1H`); None for other actions."""
    if not isinstance(action, Mapping) or action.get("type") not in ("http", "https"):
        return None
    completion = action.get("completion")
    if not isinstance(completion, Mapping) or completion.get("mode") != "callback":
        return "sync"
    return f"callback within {completion.get('timeout')}"


def catch_up_text(catch_up: Any) -> str | None:
    """A catch-up policy in a few words: `all; window P1D; at most 10 runs`."""
    if not isinstance(catch_up, Mapping):
        return None
    parts = [str(catch_up.get("policy") or "latest")]
    if catch_up.get("window"):
        parts.append(f"window {catch_up['window']}")
    if catch_up.get("maxRuns"):
        parts.append(f"at most {catch_up['maxRuns']} runs")
    return "; ".join(parts)


def timeout_text(action: Any) -> str | None:
    """How long an attempt of the action may take, where the job says: its request's or
    message's `timeout`, or for a sequence each step's that has one (`build PT5M`)."""
    if not isinstance(action, Mapping):
        return None
    for key in ("request", *MESSAGE_KEYS):
        part = action.get(key)
        if isinstance(part, Mapping) and part.get("timeout"):
            return str(part["timeout"])
    steps = [step for step in action.get("steps") or [] if isinstance(step, Mapping)]
    timed = [(step.get("name"), step.get("timeout") or timeout_text(step.get("action")))
             for step in steps]
    return ", ".join(f"{name} {timeout}" for name, timeout in timed if timeout) or None


def _first_line(message: Any) -> str:
    text = cell(message)
    if len(text) <= MESSAGE_WIDTH:
        return text
    return CUT_ESCAPE.sub("", text[:MESSAGE_WIDTH - 3]) + "..."


def short_execution_id(execution_id: Any) -> str | None:
    """An execution id cut to its last 8 digits, enough to tell a job's executions apart:
    the service's ids begin with the time they were made (UUIDv7), so their beginnings are
    alike and their ends are random."""
    if not execution_id:
        return None
    return str(execution_id)[-SHORT_ID:]


def history_table(entries: Sequence[Mapping[str, Any]]) -> str:
    """The table of `jobs history`: with the execution each attempt belongs to and, for a
    sequence, its step, when the service tells them."""
    with_execution = any(entry.get("executionId") for entry in entries)
    with_step = any(entry.get("stepName") for entry in entries)
    headers = ["TIME", "STATUS", "ACTION", "RETRY"]
    headers += ["EXECUTION"] * with_execution + ["STEP"] * with_step + ["MESSAGE"]
    rows = []
    for entry in entries:
        row = [entry.get("startTime") or entry.get("timestamp"), entry.get("status"),
               entry.get("actionName"), entry.get("retryCount")]
        if with_execution:
            row.append(short_execution_id(entry.get("executionId")))
        if with_step:
            row.append(entry.get("stepName"))
        rows.append((*row, _first_line(entry.get("message"))))
    return table(headers, rows)


def occurrences_table(times: Sequence[str]) -> str:
    """The table of `jobs occurrences`."""
    return table(("NEXT OCCURRENCES",), [(moment,) for moment in times])


def execution_fields(execution: Mapping[str, Any]) -> str:
    """The field list of `jobs run`, `collections run` and the `executions` commands."""
    output = execution.get("outputParameters") or {}
    pairs: list[tuple[str, Any]] = [
        ("execution", execution.get("id")),
        ("job", execution.get("jobId") or ("(inline)" if "jobId" in execution else None)),
        ("trigger", execution.get("trigger")), ("status", execution.get("status")),
        ("scheduled", execution.get("scheduledTime")),
        ("started", execution.get("startTime")), ("ended", execution.get("endTime")),
        ("node", execution.get("node")), ("attempts", execution.get("attempts")),
    ]
    if output.get("statusCode") is not None:  # None: no answer came (refused, timed out)
        pairs.append(("answer", f"{output['statusCode']} {output.get('reasonPhrase') or ''}"))
    if execution.get("steps"):
        pairs.append(("step", _current_step(execution)))
    if execution.get("message"):
        pairs.append(("message", _first_line(execution["message"])))
    return fields(pairs)


def executions_table(found: Sequence[Mapping[str, Any]]) -> str:
    """The table of `executions list`: the full ids, which the other commands take."""
    rows = []
    for execution in found:
        where = _current_step(execution) if execution.get("steps") else None
        rows.append((execution.get("id"), execution.get("jobId") or "(inline)",
                     execution.get("trigger"), execution.get("status"),
                     execution.get("scheduledTime"), execution.get("endTime"),
                     execution.get("attempts"), where or _first_line(execution.get("message"))))
    return table(("ID", "JOB", "TRIGGER", "STATUS", "SCHEDULED", "ENDED", "ATTEMPTS",
                  "STEP OR MESSAGE"), rows)


def backfill_text(made: Mapping[str, Any]) -> str:
    """The text of `jobs backfill`: the runs it made, then the occurrences it left out."""
    runs = [run for run in made.get("executions") or [] if isinstance(run, Mapping)]
    left_out = made.get("leftOut") or {}
    summary = (f"{len(runs)} run{'s' if len(runs) != 1 else ''} made; left out: "
               f"{left_out.get('ranAlready', 0)} that ran already, "
               f"{left_out.get('excluded', 0)} excluded by a calendar")
    if not runs:
        return summary
    return table(("ID", "SCHEDULED", "STATUS"), [
        (run.get("id"), run.get("scheduledTime"), run.get("status")) for run in runs]) \
        + "\n" + summary


def execution_details(execution: Mapping[str, Any]) -> str:
    """The text of `executions show`: the execution's fields, then its steps, if any."""
    text = execution_fields(execution)
    steps = [step for step in execution.get("steps") or [] if isinstance(step, Mapping)]
    if not steps:
        return text
    return text + "\n\n" + table(("#", "STEP", "STATUS", "TRIES", "ENDED", "MESSAGE"), [
        (number, step.get("name"), step.get("status"), step.get("tries"), step.get("endTime"),
         _first_line(step.get("message"))) for number, step in enumerate(steps, 1)])


def _current_step(execution: Mapping[str, Any]) -> str:
    """`2 of 3: deploy (waiting)`: where a sequence's execution stands."""
    steps = execution.get("steps") or []
    index = execution.get("currentStep")
    if not isinstance(index, int) or not 0 <= index < len(steps):
        return f"{len(steps)} steps"
    step = steps[index] if isinstance(steps[index], Mapping) else {}
    return f"{index + 1} of {len(steps)}: {step.get('name')} ({step.get('status')})"


def paused_step(execution: Mapping[str, Any]) -> str | None:
    """The name of the step a paused sequence waits at (a failed or a manual one), if any."""
    for step in execution.get("steps") or []:
        if isinstance(step, Mapping) and step.get("status") in ("paused", "waiting"):
            return str(step.get("name"))
    return None


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


# --- management certificates ---------------------------------------------------------------

def certificates_table(found: Sequence[Mapping[str, Any]]) -> str:
    """The table of `certs list`."""
    return table(("THUMBPRINT", "SUBJECT", "NOT AFTER", "REGISTERED"), [
        (c.get("thumbprint"), c.get("subject"), c.get("notAfter"), c.get("created"))
        for c in found])


def certificate_fields(certificate: Mapping[str, Any]) -> str:
    """The field list of `certs add`."""
    return fields([
        ("thumbprint", certificate.get("thumbprint")), ("subject", certificate.get("subject")),
        ("issuer", certificate.get("issuer")), ("not before", certificate.get("notBefore")),
        ("not after", certificate.get("notAfter")), ("registered", certificate.get("created")),
    ])


# --- status --------------------------------------------------------------------------------

def problems_table(problems: Sequence[Mapping[str, Any]]) -> str:
    """The table of `status`: one line per problem, newest first."""
    if not problems:
        return "Nothing needs attention."
    return table(("KIND", "SINCE", "WHERE", "MESSAGE"), [
        (p.get("kind"), p.get("since"),
         "/".join(str(part) for part in (p.get("cloudService"), p.get("collection"),
                                         p.get("job")) if part),
         _first_line(p.get("message"))) for p in problems])
