"""What the engine reads from a stored job: its actions, their retry policies, the request."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from scheduler.domain.executions import MAIN_ACTION
from scheduler.domain.retry import RetryPolicy


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
