"""A stand-in executor for tests: it sends nothing and answers as it is told."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from scheduler.actions.base import ExecutionContext, Outcome
from scheduler.domain.jobs import Action


@dataclass(frozen=True, slots=True)
class StubCall:
    """One action as the stub was asked to run it."""

    action: Action
    context: ExecutionContext


@dataclass
class StubExecutor:
    """Runs any action by recording it and answering with the next of `outcomes` (success
    once they run out); `refuse` makes `prepare` fail actions whose type it names."""

    name: str = "Stub"
    outcomes: list[bool] = field(default_factory=list)
    refuse: frozenset[str] = frozenset()
    calls: list[StubCall] = field(default_factory=list)

    def prepare(self, action: Action, context: ExecutionContext) -> StubCall | Outcome:
        """The call to record, or the failure of a refused type."""
        if action.kind in self.refuse:
            return Outcome(False, f"{self.name} Action - refused before it ran")
        return StubCall(action, context)

    def submit(self, call: StubCall, timeout: float) -> asyncio.Future[Any]:
        """Record the call; its future is done on the loop's next turn."""
        self.calls.append(call)
        done: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        success = self.outcomes.pop(0) if self.outcomes else True
        done.get_loop().call_soon(done.set_result, success)
        return done

    def outcome(self, call: StubCall, done: asyncio.Future[Any], timeout: float) -> Outcome:
        """What the stub was told to answer, with the execution it ran for."""
        success = bool(done.result())
        word = "succeeded" if success else "failed"
        return Outcome(success, f"{self.name} Action - {call.action.kind} {word}",
                       {"executionId": call.context.execution_id})

    def describe(self, call: StubCall) -> Mapping[str, Any]:
        """The action's type and the execution it runs for."""
        return {"type": call.action.kind, "executionId": call.context.execution_id}

    async def close(self) -> None:
        """Nothing is held open."""
