"""A job as the service acts on it."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from scheduler.domain.recurrence import Recurrence, shortest_gap
from scheduler.domain.states import JobState

STATES = tuple(JobState)


@dataclass
class JobSpec:
    """A valid job: its public definition, its secrets, and the parts the service acts on."""

    definition: dict[str, Any]
    secrets: dict[str, str] = field(default_factory=dict)
    state: str = JobState.ENABLED
    state_details: str | None = None
    start_time: datetime | None = None
    recurrence: Recurrence | None = None
    uses_authentication: bool = False

    @property
    def shortest_gap_seconds(self) -> int | None:
        """The shortest time between two occurrences, in seconds; None for one-shot jobs."""
        if self.recurrence is None:
            return None
        return int(shortest_gap(self.recurrence).total_seconds())
