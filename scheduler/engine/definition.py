"""What the engine reads from a stored job: its actions, their retry policies, the request."""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from scheduler.actions.auth import ActiveDirectoryCredentials, ClientCertificate
from scheduler.actions.http import HttpRequest, basic_authorization
from scheduler.domain.retry import RetryPolicy
from scheduler.job_document import format_datetime

MAIN_ACTION, ERROR_ACTION = "MainAction", "ErrorAction"
_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_.]*)\s*\}\}")


@dataclass(frozen=True, slots=True)
class ExecutionContext:
    """Who is calling: the values outbound headers and placeholders are made of."""

    job_id: str
    collection: str
    execution_id: str
    scheduled_time: datetime
    parameters: Mapping[str, Any]


def action_named(document: Mapping[str, Any], name: str) -> Mapping[str, Any] | None:
    """The main action or the error action of a full job document."""
    action = document["action"]
    if name == MAIN_ACTION:
        return dict(action)
    error: Mapping[str, Any] | None = action.get("errorAction")
    return error


def retry_policy(action: Mapping[str, Any]) -> RetryPolicy:
    """The action's retry policy, Azure's default when it has none."""
    policy = action.get("retryPolicy") or {}
    return RetryPolicy.from_fields(policy.get("retryType"), policy.get("retryInterval"),
                                   policy.get("retryCount"), policy.get("maxRetryInterval"))


def substitute(text: str, context: ExecutionContext) -> str:
    """Fill `{{parameters.NAME}}`, `{{execution.id}}` and `{{execution.scheduledTime}}`."""
    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        if name == "execution.id":
            return context.execution_id
        if name == "execution.scheduledTime":
            return format_datetime(context.scheduled_time)
        if name.startswith("parameters.") and name[11:] in context.parameters:
            return str(context.parameters[name[11:]])
        return match.group(0)

    return _PLACEHOLDER.sub(value, text)


def http_request(action: Mapping[str, Any], context: ExecutionContext) -> HttpRequest:
    """The outbound request of an HTTP action, with Azure's identification headers."""
    request = action["request"]
    headers = {name: substitute(value, context)
               for name, value in (request.get("headers") or {}).items()}
    headers.update({
        "x-ms-scheduler-jobid": context.job_id,
        "x-ms-scheduler-jobcollectionid": context.collection,
        "x-ms-scheduler-expected-execution-time": format_datetime(context.scheduled_time),
        "x-ms-execution-tag": context.execution_id,
        "x-ms-client-request-id": str(uuid.uuid4()),
    })
    auth = request.get("authentication") or {}
    certificate, active_directory = None, None
    if auth.get("type") == "Basic":
        _set_authorization(headers, basic_authorization(auth["username"], auth["password"]))
    elif auth.get("type") == "ClientCertificate":
        certificate = ClientCertificate(auth["pfx"], auth.get("password") or None)
    elif auth.get("type") == "ActiveDirectoryOAuth":
        active_directory = ActiveDirectoryCredentials(
            auth["tenant"], auth["audience"], auth["clientId"], auth["secret"])
    body = request.get("body")
    return HttpRequest(
        method=request["method"], uri=substitute(request["uri"], context), headers=headers,
        body=substitute(body, context) if body is not None else None,
        client_certificate=certificate, active_directory=active_directory,
    )


def _set_authorization(headers: dict[str, str], value: str) -> None:
    """Replace the job's own `Authorization` header, whatever its case."""
    for name in [n for n in headers if n.lower() == "authorization"]:
        del headers[name]
    headers["Authorization"] = value
