"""An execution's outbound request and answer as the dashboard shows them: method, address,
headers and body, every secret redacted, the same as a curl command to copy; and the answer
kept in its output parameters, as the API shows them."""

from __future__ import annotations

import json
import shlex
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from scheduler.domain.callbacks import callback_path
from scheduler.domain.durations import format_datetime
from scheduler.domain.jobs import (
    ActiveDirectoryAuthentication,
    BasicAuthentication,
    CertificateAuthentication,
    HttpAction,
    JobDefinition,
    SignatureAuthentication,
    callback_of,
)
from scheduler.domain.placeholders import (
    CALLBACK_URL,
    FILLED_BODY,
    FILLED_HEADER,
    FILLED_URI,
    Escaping,
    FillLimit,
    PlaceholderError,
    Template,
    body_kind,
    body_template,
    text_template,
    uri_template,
)
from scheduler.services.dashboard import Run

REDACTED = "<redacted>"
# Headers whose values are secrets wherever they appear.
SECRET_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie", "x-api-key",
                            "x-functions-key", "ocp-apim-subscription-key"})


@dataclass(frozen=True)
class ShownRequest:
    """An HTTP request as an execution sent it, its placeholders filled with the
    execution's values and its secrets redacted."""

    method: str
    uri: str
    headers: dict[str, str]
    body: str | None
    authentication: str | None
    parameters: Mapping[str, Any]

    @property
    def curl(self) -> str:
        """The request as a curl command, secrets redacted."""
        parts = ["curl", "-X", self.method, shlex.quote(self.uri)]
        for name, value in self.headers.items():
            parts += ["-H", shlex.quote(f"{name}: {value}")]
        if self.body is not None:
            parts += ["--data-raw", shlex.quote(self.body)]
        return " ".join(parts)


def redacted_request(definition: JobDefinition, parameters: Mapping[str, Any],
                     execution_id: str, scheduled: datetime, public_url: str = ""
                     ) -> ShownRequest | None:
    """The main action's request as the execution sent it, if it is an HTTP one: its
    placeholders filled as they were (a placeholder left without a value, which failed the
    attempt, as written), every secret redacted, and a callback URL (under `public_url`)
    with its token redacted."""
    action = definition.action
    if not isinstance(action, HttpAction):
        return None
    merged = {**definition.parameters, **parameters}
    value_of = _values(merged, execution_id, scheduled,
                       public_url if callback_of(action) is not None else None)
    headers = {name: REDACTED if name.lower() in SECRET_HEADERS
               else _filled(text_template(value, Escaping.HEADER), value, value_of,
                            FILLED_HEADER)
               for name, value in action.headers.items()}
    body = action.body
    if body is not None:
        content_type = next((value for name, value in action.headers.items()
                             if name.lower() == "content-type"), None)
        body = _filled(body_template(body, body_kind(content_type)), body, value_of,
                       FILLED_BODY)
    auth = action.authentication
    described = None
    if isinstance(auth, BasicAuthentication):
        headers["Authorization"] = f"Basic {REDACTED} (user {auth.username})"
        described = f"basic, user {auth.username}, password redacted"
    elif isinstance(auth, CertificateAuthentication):
        described = f"client certificate {auth.thumbprint or ''} {auth.subject or ''}".strip()
    elif isinstance(auth, ActiveDirectoryAuthentication):
        headers["Authorization"] = f"Bearer {REDACTED}"
        described = (f"Active Directory token for {auth.audience} (tenant {auth.tenant}, "
                     f"client {auth.client_id}, secret redacted)")
    elif isinstance(auth, SignatureAuthentication):
        headers["webhook-signature"] = f"v1,{REDACTED}"
        described = "Standard Webhooks signature, secret redacted" + (
            " (and the previous secret's, while it is replaced)"
            if auth.previous_secret is not None else "")
    uri = _filled(uri_template(action.uri), action.uri, value_of, FILLED_URI)
    return ShownRequest(method=action.method.upper(), uri=uri, headers=headers, body=body,
                        authentication=described, parameters=merged)


def _values(parameters: Mapping[str, Any], execution_id: str, scheduled: datetime,
            public_url: str | None = None) -> Callable[[str], Any]:
    """What the placeholders of a main action stood for when the execution sent it; its
    callback URL, if it waits for one, its token redacted."""
    def value_of(name: str) -> Any:
        if name == CALLBACK_URL and public_url is not None:
            return public_url + callback_path(execution_id, REDACTED)
        if name == "execution.id":
            return execution_id
        if name == "execution.scheduledTime":
            return format_datetime(scheduled)
        if name.startswith("parameters.") and name[11:] in parameters:
            return parameters[name[11:]]
        raise PlaceholderError(name, "has no value")
    return value_of


def _filled(template: Template, text: str, value_of: Callable[[str], Any], limit: FillLimit
            ) -> str:
    """A text with its placeholders filled; as written if one has no value (or the text
    grows past `limit`): the attempt failed, and nothing was sent."""
    if "{{" not in text:
        return text
    try:
        return template.fill(value_of, limit)
    except PlaceholderError:
        return text


def answer_of(run: Run) -> dict[str, Any] | None:
    """What an execution's last attempt was answered, as its output parameters keep it."""
    if not run.output:
        return None
    try:
        answer = json.loads(run.output)
    except ValueError:
        return None
    return answer if isinstance(answer, dict) else {"output": answer}


def http_status(run: Run) -> int | None:
    """The status code of an HTTP action's last answer, if it had one."""
    code = (answer_of(run) or {}).get("statusCode")
    return code if isinstance(code, int) else None
