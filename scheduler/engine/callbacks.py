"""Calls that wait for their target's callback, on the engine's side.

A call of an action whose completion mode is `callback` is given a fresh token when its
execution is leased (the hash kept in the same transaction, so that a callback that comes
before the call's answer is recorded finds it). A target that answers 202 leaves the
execution running, held by no node, until its result comes (the API keeps it, and it is
made the attempt's outcome when a node next claims the execution) or its deadline passes
(the attempt fails). Either way the outcome is recorded as any attempt's is, by `decide`:
retries follow the job's policy, each with a new token.
"""

from __future__ import annotations

import dataclasses
import secrets
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from scheduler.actions.base import Outcome
from scheduler.domain.callbacks import (
    CallbackResult,
    callback_path,
    timed_out_message,
    token_digest,
)
from scheduler.domain.durations import format_datetime
from scheduler.domain.executions import EventKind, clipped_value
from scheduler.domain.jobs import callback_of
from scheduler.engine.leased import ARMED, Claimed
from scheduler.engine.recorder import AttemptRecord
from scheduler.engine.store import EngineStore, NewRow

ACCEPTED_STATUS = 202


def awaits_callback(claimed: Claimed) -> bool:
    """Whether the attempt's call is to wait for its target's callback."""
    stage = claimed.stage
    return (stage is not None and claimed.callback_deadline is None
            and callback_of(stage.action) is not None)


def arm(claimed: Iterable[Claimed], base_url: str) -> tuple[list[Claimed], dict[str, str]]:
    """The claimed executions, those whose call waits for a callback each with a new
    callback URL under `base_url`; and the hash of each new token, by execution id."""
    armed: list[Claimed] = []
    hashes: dict[str, str] = {}
    for execution in claimed:
        if awaits_callback(execution):
            token = secrets.token_urlsafe(32)
            hashes[execution.execution_id] = token_digest(token)
            execution = dataclasses.replace(
                execution, callback_url=base_url + callback_path(execution.execution_id, token))
        armed.append(execution)
    return armed, hashes


def ended_outcome(claimed: Claimed) -> Outcome | None:
    """The outcome of an attempt that waited for its callback: the result the target posted,
    or a failure once its deadline passed; None when it waited for none."""
    if claimed.callback_deadline is None:
        return None
    if claimed.callback_result is not None:
        result = CallbackResult.loads(claimed.callback_result)
        return Outcome(result.success, result.history_message(),
                       {"status": result.status, "output": result.output})
    stage = claimed.stage
    completion = callback_of(stage.action) if stage is not None else None
    waited = completion.timeout.text if completion is not None else "its time"
    return Outcome(False, timed_out_message(waited))


def is_accepted(record: AttemptRecord) -> bool:
    """Whether an attempt's call, made with a callback URL, was accepted by its target
    (202): its outcome comes later."""
    return record.callback == ARMED and record.outcome.success and record.outcome.accepted


def accepted_row(record: AttemptRecord) -> NewRow:
    """The execution's row once its target accepted the call: it waits until the
    deadline, the attempt's outcome not yet known."""
    return {"b_id": record.execution_id, "b_deadline": deadline_of(record),
            "b_message": record.outcome.message,
            "b_output": EngineStore.encoded_detail(record.outcome.output)}


def deadline_of(record: AttemptRecord) -> datetime:
    """Until when an accepted call's callback is waited for."""
    stage = record.definition.stage(record.action_name, record.step)
    completion = callback_of(stage.action) if stage is not None else None
    assert completion is not None  # a call made with a callback URL waits for one
    return record.ended + completion.timeout.value


def accepted_event(record: AttemptRecord) -> NewRow:
    """The `accepted` event: the call (its token redacted) and until when it waits."""
    detail: dict[str, Any] = {
        "action": record.action_name, "retry": record.attempt,
        "status_code": ACCEPTED_STATUS,
        "callback_deadline": format_datetime(deadline_of(record)),
        "duration_ms": round((record.ended - record.started).total_seconds() * 1000)}
    if record.sent is not None:
        detail["request"] = clipped_value(dict(record.sent))
    return EngineStore.event_row(record.execution_id, record.started, EventKind.ACCEPTED,
                                 node=record.node, attempt=record.attempts + 1,
                                 detail=detail)
