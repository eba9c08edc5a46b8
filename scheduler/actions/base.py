"""The one interface the engine runs actions through, whatever they call or post to.

An executor turns an action of a job into something ready to go out (`prepare`), starts it
(`submit`, which hands back a future rather than a task: thousands go out at one instant) and
reads what came back once the future is done (`outcome`). The engine and the recorder know
actions only through this module; each action type is one module in `actions/` that the
registry maps its type names to.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol, TypeVar

from scheduler.domain.jobs import Action

Prepared = TypeVar("Prepared")


@dataclass(frozen=True, slots=True)
class ExecutionContext:
    """Who is acting: the values identification headers and placeholders are made of.

    `steps` holds, in a sequence, the output parameters of the steps done so far, by name;
    `region` is the region of the job's cloud service (its `GeoRegion`); `callback_url`, for
    an attempt that waits for its target's callback, the URL the target posts its result to.
    """

    job_id: str
    collection: str
    execution_id: str
    scheduled_time: datetime
    parameters: Mapping[str, Any]
    steps: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    region: str = ""
    callback_url: str | None = None


@dataclass(slots=True)
class Outcome:
    """What one attempt of an action came to.

    `message` is the history entry's text in Azure's format (`Http Action - Response from
    host ...`); `output` holds the action's output parameters (for HTTP: the status code, the
    reason, the headers and the first bytes of the body).
    """

    success: bool
    message: str
    output: Mapping[str, Any] = field(default_factory=dict)
    # The target took the call to finish later (HTTP 202 Accepted).
    accepted: bool = False


class ActionExecutor(Protocol[Prepared]):
    """Runs the actions of some types: prepared ahead of their time, sent at it."""

    def prepare(self, action: Action, context: ExecutionContext) -> Prepared | Outcome:
        """The action made ready to go out; an action that cannot run is its failed
        outcome already."""
        ...

    def submit(self, prepared: Prepared, timeout: float) -> asyncio.Future[Any]:
        """Start a prepared action; the future is done when it has finished or failed."""
        ...

    def outcome(self, prepared: Prepared, done: asyncio.Future[Any], timeout: float
                ) -> Outcome:
        """What a finished action came to, read from its done future."""
        ...

    def describe(self, prepared: Prepared) -> Mapping[str, Any]:
        """What a prepared action sends, secrets left out: a step's input, as its execution
        reports it."""
        ...

    async def close(self) -> None:
        """Release what the executor holds open (connections, clients)."""
        ...


@dataclass(frozen=True, slots=True)
class ReadyAction:
    """An action prepared for one attempt, with the executor that will run it."""

    executor: ActionExecutor[Any]
    prepared: Any

    def submit(self, timeout: float) -> asyncio.Future[Any]:
        """Start the action."""
        return self.executor.submit(self.prepared, timeout)

    def outcome(self, done: asyncio.Future[Any], timeout: float) -> Outcome:
        """What the finished action came to."""
        return self.executor.outcome(self.prepared, done, timeout)

    def describe(self) -> Mapping[str, Any]:
        """What the action sends, secrets left out."""
        return self.executor.describe(self.prepared)
