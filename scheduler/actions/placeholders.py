"""Placeholders in an action's text, filled for each execution, each value escaped for
where it stands (see `scheduler.domain.placeholders`).

`{{parameters.NAME}}`, `{{execution.id}}`, `{{execution.scheduledTime}}`, in an action that
waits for its target's callback `{{execution.callbackUrl}}`, and, in a sequence,
`{{steps.NAME.output.FIELD}}` (`statusCode`, `body`, ...) and `{{steps.NAME.output.json.PATH}}`
(a field of the JSON body, `a.b.0` for nested ones). A placeholder with no value raises
`PlaceholderError`, which fails the attempt: nothing is sent with a placeholder as written.
A text that its values make longer than its limit (`FILLED_URI`, `FILLED_HEADER`,
`FILLED_BODY`) raises `FilledTooLong`, a `PlaceholderError` too: step outputs are only known
here, so this is the one place every filled text passes through.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

from scheduler.actions.base import ExecutionContext
from scheduler.domain.durations import format_datetime
from scheduler.domain.placeholders import (
    CALLBACK_URL,
    FILLED_BODY,
    FILLED_HEADER,
    FILLED_URI,
    Escaping,
    PlaceholderError,
    body_kind,
    body_template,
    text_template,
    uri_template,
)

_MISSING = object()


def fill_text(text: str, context: ExecutionContext, escaping: Escaping = Escaping.TEXT
              ) -> str:
    """A message, routing key or other text, its values written as `escaping` says; header
    values are bounded as headers, any other text as a body."""
    if "{{" not in text:
        return text
    limit = FILLED_HEADER if escaping is Escaping.HEADER else FILLED_BODY
    return text_template(text, escaping).fill(_values(context), limit)


def fill_header(text: str, context: ExecutionContext) -> str:
    """A header value; a value a header cannot carry raises `PlaceholderError`."""
    return fill_text(text, context, Escaping.HEADER)


def fill_uri(text: str, context: ExecutionContext) -> str:
    """A URI, each value percent-encoded for the path segment or query value it is in."""
    if "{{" not in text:
        return text
    return uri_template(text).fill(_values(context), FILLED_URI)


def fill_body(text: str, content_type: str | None, context: ExecutionContext) -> str:
    """A body, its values escaped as its content type says (JSON, form, XML, or as given)."""
    if "{{" not in text:
        return text
    return body_template(text, body_kind(content_type)).fill(_values(context), FILLED_BODY)


def content_type_of(headers: Mapping[str, Any]) -> str | None:
    """The `Content-Type` among an action's headers, whatever its case."""
    for name, value in headers.items():
        if name.lower() == "content-type":
            return str(value)
    return None


def _values(context: ExecutionContext) -> Callable[[str], Any]:
    """What each placeholder name stands for in this execution."""

    def value_of(name: str) -> Any:
        if name == "execution.id":
            return context.execution_id
        if name == "execution.scheduledTime":
            return format_datetime(context.scheduled_time)
        if name == CALLBACK_URL:
            if context.callback_url is None:
                raise PlaceholderError(name, "has no value: the attempt waits for no callback")
            return context.callback_url
        if name.startswith("parameters."):
            value = context.parameters.get(name[11:], _MISSING)
            if value is _MISSING:
                raise PlaceholderError(name, "has no value: neither the job's parameters nor "
                                             "the run give it")
            return value
        if name.startswith("steps."):
            found = _step_value(name.split(".")[1:], context.steps)
            if found is _MISSING:
                raise PlaceholderError(name, "has no value: no earlier step gave that output")
            return found
        raise PlaceholderError(name, "is in no known namespace")

    return value_of


def _step_value(path: list[str], steps: Mapping[str, Mapping[str, Any]]) -> Any:
    """`NAME.output.FIELD` or `NAME.output.json.PATH...` of the steps done so far."""
    if len(path) < 3 or path[1] != "output":
        return _MISSING
    output = next((out for name, out in steps.items() if name.lower() == path[0].lower()),
                  None)
    if output is None:
        return _MISSING
    if path[2] != "json":
        return output.get(path[2], _MISSING) if len(path) == 3 else _MISSING
    try:
        node: Any = json.loads(output.get("body") or "")
    except ValueError:
        return _MISSING
    for part in path[3:]:
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return _MISSING
    return node
