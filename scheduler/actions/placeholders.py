"""Placeholders in an action's text, filled for each execution."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from scheduler.actions.base import ExecutionContext
from scheduler.domain.durations import format_datetime

_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_.\-]*)\s*\}\}")
_MISSING = object()


def substitute(text: str, context: ExecutionContext) -> str:
    """Fill `{{parameters.NAME}}`, `{{execution.id}}`, `{{execution.scheduledTime}}` and,
    in a sequence, `{{steps.NAME.output.FIELD}}` (`statusCode`, `body`, ...) and
    `{{steps.NAME.output.json.PATH}}` (a field of the JSON body, `a.b.0` for nested ones);
    a placeholder with no value is left as written."""
    if "{{" not in text:
        return text

    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        if name == "execution.id":
            return context.execution_id
        if name == "execution.scheduledTime":
            return format_datetime(context.scheduled_time)
        if name.startswith("parameters.") and name[11:] in context.parameters:
            return str(context.parameters[name[11:]])
        if name.startswith("steps."):
            found = _step_value(name.split(".")[1:], context.steps)
            if found is not _MISSING:
                return _as_text(found)
        return match.group(0)

    return _PLACEHOLDER.sub(value, text)


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


def _as_text(value: Any) -> str:
    """A value as it goes into text: strings as they are, the rest as JSON."""
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"))
