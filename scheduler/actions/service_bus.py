"""`serviceBusQueue` and `serviceBusTopic` actions: Send Message through Service Bus's REST
API, authorized with a SAS token made from the job's `sasKeyName` and `sasKey`.

The token is Service Bus's documented `SharedAccessSignature sr=...&sig=...&se=...&skn=...`:
`sig` is the base64 HMAC-SHA256, keyed with the SAS key, of the URL-encoded resource URI, a
newline and the expiry (seconds since the epoch). Brokered properties go in the
`BrokerProperties` header as JSON, custom properties as headers of their own (with the
execution's identification among them). The namespace's endpoint is a template
(`https://{namespace}.servicebus.windows.net` by default); the call goes through the same HTTP
client, with the same address checks, as HTTP actions. The namespace and the queue or topic
path are checked again here and percent-encoded where they stand, so that no stored value can
name another host or path than the template's.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import quote, quote_plus

from scheduler.actions.base import ExecutionContext, Outcome
from scheduler.actions.http import HttpCaller, HttpOutcome, HttpRequest, PreparedCall
from scheduler.actions.placeholders import fill_body, fill_header
from scheduler.actions.tags import with_identification
from scheduler.clock import Clock
from scheduler.domain.jobs import Action, ServiceBusAction
from scheduler.domain.outbound import (
    ENTITY_PATH_RULE,
    NAMESPACE_RULE,
    SEND_MESSAGE_HEADERS,
    is_entity_path,
    is_namespace_name,
)

DEFAULT_ENDPOINT = "https://{namespace}.servicebus.windows.net"
TOKEN_LIFETIME = timedelta(hours=1)
_ERROR_DETAIL = re.compile(r"<Detail>(.*?)</Detail>", re.DOTALL)


def sas_token(resource_uri: str, key_name: str, key: str, expiry: int) -> str:
    """Service Bus's SAS token for a resource, valid until `expiry` (epoch seconds)."""
    encoded = quote_plus(resource_uri.lower())
    digest = hmac.new(key.encode(), f"{encoded}\n{expiry}".encode(), hashlib.sha256).digest()
    signature = quote(base64.b64encode(digest).decode(), safe="")
    return f"SharedAccessSignature sr={encoded}&sig={signature}&se={expiry}&skn={key_name}"


@dataclass(frozen=True, slots=True)
class BusSend:
    """One Send Message, checked and encoded, and where it goes."""

    entity: str
    namespace: str
    headers: dict[str, str]
    body: str
    call: PreparedCall


class ServiceBusExecutor:
    """Runs `serviceBusQueue` and `serviceBusTopic` actions through an `HttpCaller`."""

    TYPES = ("serviceBusQueue", "serviceBusTopic")

    def __init__(self, caller: HttpCaller, clock: Clock,
                 endpoint: str = DEFAULT_ENDPOINT) -> None:
        self.caller, self.clock, self.endpoint = caller, clock, endpoint

    def prepare(self, action: Action, context: ExecutionContext) -> BusSend | Outcome:
        """The Send Message request; one that cannot be made is its failed outcome."""
        if not isinstance(action, ServiceBusAction):
            return Outcome(False, f"ServiceBus Action - a {action.kind} action is not a "
                                  "message")
        entity, namespace = action.entity, action.namespace
        problem = naming_problem(namespace, entity)
        if problem is not None:  # a job stored before the names were checked
            return Outcome(False, _failure(entity, namespace, problem))
        uri = f"{self.entity_uri(namespace, entity)}/messages"
        headers = _message_headers(action, context)
        expiry = int((self.clock.now() + TOKEN_LIFETIME).timestamp())
        signed = {**headers, "Authorization": sas_token(
            uri.rsplit("/messages", 1)[0], action.sas_key_name, action.sas_key.value, expiry)}
        body = fill_body(action.message, headers["Content-Type"], context)
        call = self.caller.prepare(HttpRequest("POST", uri, signed, body))
        if isinstance(call, HttpOutcome):
            return Outcome(False, _failure(entity, namespace, call.message))
        return BusSend(entity, namespace, headers, body, call)

    def entity_uri(self, namespace: str, entity: str) -> str:
        """The entity's URI on the namespace's endpoint."""
        # Checked by `naming_problem`, and percent-encoded all the same: whatever they hold
        # stays one host label and path segments under the template's own host.
        host = self.endpoint.replace("{namespace}", quote(namespace, safe=""))
        path = "/".join(quote(segment, safe="") for segment in entity.split("/"))
        return f"{host.rstrip('/')}/{path}"

    def submit(self, send: BusSend, timeout: float) -> asyncio.Future[Any]:
        """Send the request."""
        return self.caller.submit(send.call, timeout)

    def outcome(self, send: BusSend, done: asyncio.Future[Any], timeout: float) -> Outcome:
        """Sent (`201 Created`), or Service Bus's reason why not."""
        answer = self.caller.outcome(send.call, done, timeout)
        if answer.status_code == 201:
            return Outcome(True, f"ServiceBus Action - The message was sent to "
                                 f"'{send.entity}' in namespace '{send.namespace}'",
                           {"statusCode": 201, "entity": send.entity,
                            "namespace": send.namespace})
        if answer.status_code is None:
            return Outcome(False, _failure(send.entity, send.namespace, answer.message))
        found = _ERROR_DETAIL.search(answer.body)
        reason = found.group(1).strip() if found else answer.body[:200] or answer.reason
        return Outcome(False, _failure(send.entity, send.namespace,
                                       f"{answer.status_code} {answer.reason}: {reason}"),
                       {"statusCode": answer.status_code, "reasonPhrase": answer.reason,
                        "body": answer.body})

    def describe(self, send: BusSend) -> Mapping[str, Any]:
        """Where the message went, its headers and body; the SAS token is left out."""
        return {"namespace": send.namespace, "entity": send.entity,
                "headers": dict(send.headers), "message": send.body}

    async def close(self) -> None:
        """The caller's connections are closed by its owner, the HTTP executor."""


def naming_problem(namespace: str, entity: str) -> str | None:
    """Which Service Bus naming rule a namespace or queue or topic path breaks, if any."""
    if not is_namespace_name(namespace):
        return f"the namespace {NAMESPACE_RULE}"
    if not is_entity_path(entity):
        return f"the queue or topic path {ENTITY_PATH_RULE}"
    return None


def _message_headers(action: ServiceBusAction, context: ExecutionContext) -> dict[str, str]:
    """The brokered properties as `BrokerProperties`, the content type as `Content-Type`,
    custom properties and the execution's identification as headers (strings quoted, as
    Service Bus reads custom property values)."""
    headers = {"Content-Type": str(action.content_type or "text/plain")}
    properties = {name: value for name, value in action.broker_properties.items()
                  if value is not None}
    properties.setdefault("MessageId", context.execution_id)
    headers["BrokerProperties"] = json.dumps(properties, separators=(",", ":"))
    # A job stored before these names were refused keeps its other properties: one of these
    # would replace a header of the message, an identification one go beside the service's.
    custom = {name: fill_header(str(value), context)
              for name, value in action.custom_properties.items()
              if name.lower() not in SEND_MESSAGE_HEADERS}
    headers.update({name: json.dumps(value)
                    for name, value in with_identification(custom, context).items()})
    return headers


def _failure(entity: str, namespace: str, reason: str) -> str:
    return (f"ServiceBus Action - The message could not be sent to '{entity}' in namespace "
            f"'{namespace}': {reason}")
