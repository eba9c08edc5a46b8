"""An execution's outbound request and answer as the dashboard shows them: method, address,
headers and body, every secret redacted, the same as a curl command to copy; and the answer
kept in its output parameters, as the API shows them."""

from __future__ import annotations

import json
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from scheduler.domain.jobs import (
    ActiveDirectoryAuthentication,
    BasicAuthentication,
    CertificateAuthentication,
    HttpAction,
    JobDefinition,
    SignatureAuthentication,
)
from scheduler.services.dashboard import Run

REDACTED = "<redacted>"
# Headers whose values are secrets wherever they appear.
SECRET_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie", "x-api-key",
                            "x-functions-key", "ocp-apim-subscription-key"})


@dataclass(frozen=True)
class ShownRequest:
    """An HTTP request with its secrets redacted; its placeholders as written (they are
    filled from the parameters when it is sent)."""

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


def redacted_request(definition: JobDefinition, parameters: Mapping[str, Any]
                     ) -> ShownRequest | None:
    """The main action's request, if it is an HTTP one, with every secret redacted."""
    action = definition.action
    if not isinstance(action, HttpAction):
        return None
    headers = {name: REDACTED if name.lower() in SECRET_HEADERS else value
               for name, value in action.headers.items()}
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
    return ShownRequest(method=action.method.upper(), uri=action.uri, headers=headers,
                        body=action.body, authentication=described,
                        parameters={**definition.parameters, **parameters})


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
