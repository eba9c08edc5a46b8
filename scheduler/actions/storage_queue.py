"""`storageQueue` actions: Put Message on an Azure Storage queue through its REST API.

The message is Azure Scheduler's `StorageQueueMessage` XML envelope around the job's text,
sent with the job's SAS token to `{endpoint}/{queue}/messages`, where the endpoint is a
template of the account name (`https://{account}.queue.core.windows.net` by default; the
emulator Azurite is `http://127.0.0.1:10001/{account}`). The call goes through the same
HTTP client, with the same address checks, as HTTP actions.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from xml.sax.saxutils import escape

from scheduler.actions.base import ExecutionContext, Outcome
from scheduler.actions.http import HttpCaller, HttpOutcome, HttpRequest, PreparedCall
from scheduler.actions.placeholders import fill_text
from scheduler.actions.tags import identification
from scheduler.domain.durations import format_datetime
from scheduler.domain.jobs import Action, StorageQueueAction

DEFAULT_ENDPOINT = "https://{account}.queue.core.windows.net"
API_VERSION = "2018-03-28"
_ERROR_MESSAGE = re.compile(r"<Message>(.*?)(?:\n|</Message>)", re.DOTALL)


@dataclass(frozen=True, slots=True)
class QueuePut:
    """One Put Message, checked and encoded, and where it goes."""

    account: str
    queue: str
    envelope: str
    call: PreparedCall


def envelope(context: ExecutionContext, message: str, client_request_id: str) -> str:
    """Azure Scheduler's `StorageQueueMessage` around the job's message text."""
    fields = (
        ("ExecutionTag", context.execution_id),
        ("ClientRequestId", client_request_id),
        ("ExpectedExecutionTime", format_datetime(context.scheduled_time).rstrip("Z")),
        ("SchedulerJobId", context.job_id),
        ("SchedulerJobCollectionId", context.collection),
        ("Region", context.region),
        ("Message", message),
    )
    body = "".join(f"<{name}>{escape(value)}</{name}>" for name, value in fields)
    return ('<?xml version="1.0" encoding="utf-16"?>'
            '<StorageQueueMessage xmlns:xsd="http://www.w3.org/2001/XMLSchema" '
            'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">'
            f"{body}</StorageQueueMessage>")


class StorageQueueExecutor:
    """Runs `storageQueue` actions through an `HttpCaller`."""

    TYPES = ("storageQueue",)

    def __init__(self, caller: HttpCaller, endpoint: str = DEFAULT_ENDPOINT) -> None:
        self.caller, self.endpoint = caller, endpoint

    def prepare(self, action: Action, context: ExecutionContext) -> QueuePut | Outcome:
        """The Put Message request; one that cannot be made is its failed outcome."""
        if not isinstance(action, StorageQueueAction):
            return Outcome(False, f"StorageQueue Action - a {action.kind} action is not a "
                                  "queue message")
        account, queue = action.account, action.queue
        headers = identification(context)
        text = envelope(context, fill_text(action.message, context),
                        headers["x-ms-client-request-id"])
        sas = action.sas_token.value.lstrip("?")
        base = self.endpoint.replace("{account}", account).rstrip("/")
        headers.update({"x-ms-version": API_VERSION,
                        "Content-Type": "application/xml; charset=utf-8"})
        request = HttpRequest("POST", f"{base}/{queue}/messages?{sas}", headers,
                              "<QueueMessage><MessageText>"
                              f"{escape(text)}</MessageText></QueueMessage>")
        call = self.caller.prepare(request)
        if isinstance(call, HttpOutcome):
            return Outcome(False, _failure(account, queue, call.message))
        return QueuePut(account, queue, text, call)

    def submit(self, put: QueuePut, timeout: float) -> asyncio.Future[Any]:
        """Send the request."""
        return self.caller.submit(put.call, timeout)

    def outcome(self, put: QueuePut, done: asyncio.Future[Any], timeout: float) -> Outcome:
        """Put (`201 Created`), or the storage service's reason why not."""
        answer = self.caller.outcome(put.call, done, timeout)
        if answer.status_code == 201:
            return Outcome(True, f"StorageQueue Action - The message was put on queue "
                                 f"'{put.queue}' of storage account '{put.account}'",
                           {"statusCode": 201, "queueName": put.queue,
                            "storageAccount": put.account})
        if answer.status_code is None:
            return Outcome(False, _failure(put.account, put.queue, answer.message))
        found = _ERROR_MESSAGE.search(answer.body)
        reason = found.group(1).strip() if found else answer.reason
        return Outcome(False, _failure(put.account, put.queue,
                                       f"{answer.status_code} {answer.reason}: {reason}"),
                       {"statusCode": answer.status_code, "reasonPhrase": answer.reason,
                        "body": answer.body})

    def describe(self, put: QueuePut) -> Mapping[str, Any]:
        """Where the message went and its envelope; the SAS token is left out."""
        return {"storageAccount": put.account, "queueName": put.queue,
                "message": put.envelope}

    async def close(self) -> None:
        """The caller's connections are closed by its owner, the HTTP executor."""


def _failure(account: str, queue: str, reason: str) -> str:
    return (f"StorageQueue Action - The message could not be put on queue '{queue}' of "
            f"storage account '{account}': {reason}")
