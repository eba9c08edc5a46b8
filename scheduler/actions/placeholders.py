"""Placeholders in an action's text, filled for each execution."""

from __future__ import annotations

import re

from scheduler.actions.base import ExecutionContext
from scheduler.domain.durations import format_datetime

_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_.]*)\s*\}\}")


def substitute(text: str, context: ExecutionContext) -> str:
    """Fill `{{parameters.NAME}}`, `{{execution.id}}` and `{{execution.scheduledTime}}`;
    a placeholder with no value is left as written."""
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
