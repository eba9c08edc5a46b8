"""What a node holds: the executions leased to it, with what running them needs."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from scheduler.actions.base import ExecutionContext
from scheduler.domain.executions import MAIN_ACTION, StepRecord
from scheduler.domain.jobs import Sequence, Stage
from scheduler.domain.states import StepStatus, Trigger
from scheduler.engine.versions import JobVersion

# What an attempt is to a callback (`Claimed.callback_state`): its call is made with a
# callback URL; or it ends a wait for one (the result came, or the time ran out).
ARMED, ENDED = "armed", "ended"


@dataclass(frozen=True, slots=True)
class Claimed:
    """An execution this node leased, with what running it needs."""

    execution_id: str
    job_pk: int | None  # None for a run of an inline definition
    action_name: str
    attempt: int
    repeat_count: int
    scheduled_time: datetime
    parameters: Mapping[str, Any]
    version: JobVersion
    revision: int = 0
    step: int | None = None
    steps: tuple[StepRecord, ...] = ()
    attempts: int = 0  # attempts made before this one
    trigger: str = Trigger.SCHEDULE
    # Its call waits for its target's callback: the URL the target posts its result to.
    callback_url: str | None = None
    # It waited for a callback: until when, and the result posted (None: none came).
    callback_deadline: datetime | None = None
    callback_result: str | None = None

    @property
    def callback_token(self) -> str | None:
        """The token of its callback URL, if its call has one."""
        return None if self.callback_url is None else self.callback_url.rsplit("/", 1)[1]

    @property
    def callback_state(self) -> str | None:
        """What the attempt is to a callback: ARMED, ENDED, or None."""
        if self.callback_url is not None:
            return ARMED
        return ENDED if self.callback_deadline is not None else None

    @property
    def stage(self) -> Stage | None:
        """What this attempt runs: the action, or the sequence's current step."""
        return self.version.definition.stage(self.action_name, self.step)

    @property
    def in_sequence(self) -> bool:
        """Whether the attempt runs a step of a sequence."""
        return self.action_name == MAIN_ACTION and isinstance(
            self.version.definition.action, Sequence)

    def timeout(self, default: float, longest: float) -> float:
        """How long the attempt may take, in seconds: what its action or step says, else
        `default`; never more than `longest`."""
        stage = self.stage
        if stage is None or stage.timeout is None:
            return min(default, longest)
        return min(stage.timeout.total_seconds(), longest)

    @property
    def context(self) -> ExecutionContext:
        """The values outbound headers and placeholders are made of."""
        version = self.version
        parameters = version.definition.parameters
        if self.parameters:
            parameters = {**parameters, **self.parameters}
        if not self.steps:
            return ExecutionContext(version.job_id, version.collection, self.execution_id,
                                    self.scheduled_time, parameters, region=version.region,
                                    callback_url=self.callback_url)
        done = {str(record["name"]): record.get("output") or {} for record in self.steps
                if record.get("status") == StepStatus.COMPLETED}
        return ExecutionContext(version.job_id, version.collection, self.execution_id,
                                self.scheduled_time, parameters, done, version.region,
                                self.callback_url)


@dataclass(frozen=True)
class Tick:
    """What one tick did: how many due jobs it took and how many occurrences it made into
    executions (fewer if some were made already), the executions it leased to this node,
    and those it canceled (replaced by new runs of their jobs)."""

    fired: int
    claimed: list[Claimed]
    made: int = 0
    canceled: list[str] = field(default_factory=list)
