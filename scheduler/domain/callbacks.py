"""Results that come back later (`action.completion`, mode `callback`): the URL a target
posts an attempt's result to, the hash that is all the service keeps of its token, and the
result as it is kept until the engine records it.

The URL is `{public URL}/callbacks/{execution id}/{token}`, the token fresh and random for
every attempt: it is only ever in the request sent to the target. What an execution keeps
of that request shows the token as `<redacted>`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

CALLBACK_PREFIX = "/callbacks"
REDACTED = "<redacted>"
COMPLETED, FAILED = "completed", "failed"
CALLBACK_STATUSES = (COMPLETED, FAILED)


def callback_path(execution_id: str, token: str) -> str:
    """The path of an attempt's callback URL on the service's listener."""
    return f"{CALLBACK_PREFIX}/{execution_id}/{token}"


def token_digest(token: str) -> str:
    """What the service keeps of a callback token: its SHA-256, in hex."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def redacted(value: Any, token: str) -> Any:
    """A value (text, or JSON's lists and objects of text) with the token replaced by
    `<redacted>` wherever it stands."""
    if isinstance(value, str):
        return value.replace(token, REDACTED) if token in value else value
    if isinstance(value, Mapping):
        return {key: redacted(item, token) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [redacted(item, token) for item in value]
    return value


@dataclass(frozen=True, slots=True)
class CallbackResult:
    """What a target posted to its callback URL: whether the work `completed` or `failed`,
    its output (any JSON value) and a message."""

    status: str
    output: Any = None
    message: str = ""

    @property
    def success(self) -> bool:
        """Whether the target says the work succeeded."""
        return self.status == COMPLETED

    def dumps(self) -> str:
        """The result as it is kept until the engine records it."""
        return json.dumps({"status": self.status, "output": self.output,
                           "message": self.message}, separators=(",", ":"))

    @classmethod
    def loads(cls, text: str) -> CallbackResult:
        """A result as it was kept."""
        document = json.loads(text)
        return cls(str(document["status"]), document.get("output"),
                   str(document.get("message") or ""))

    def history_message(self) -> str:
        """What the attempt's history entry says of it."""
        said = f": {self.message}" if self.message else ""
        return f"Callback - the target posted its result: {self.status}{said}"


def timed_out_message(timeout: str) -> str:
    """What the history says of an attempt whose target posted nothing in time."""
    return f"Callback - the target did not post its result within {timeout}"


def is_callback_path(path: str) -> bool:
    """Whether a path is a callback URL's: it needs no client certificate, its token being
    the credential."""
    return path.startswith(CALLBACK_PREFIX + "/")
