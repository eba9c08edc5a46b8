"""What a job does with the occurrences it missed while no engine ran (its `catchUp`):
fire the latest once (`latest`, as Azure's jobs do), each of them (`all`), or none
(`none`); occurrences older than the policy's window are never run."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from scheduler.domain import InvalidField
from scheduler.domain.durations import Duration, format_iso_duration

LATEST, ALL, NONE = "latest", "all", "none"
POLICIES = (LATEST, ALL, NONE)
DEFAULT_MAX_RUNS = 100
MAX_RUNS = 1000
# With `none`, an occurrence this late is still on time: one a tick could have fired.
ON_TIME = timedelta(minutes=1)


@dataclass(frozen=True, slots=True)
class CatchUp:
    """A job's catch-up policy: `policy`, the `window` past which an occurrence is too old
    to run, and, for `all`, the most occurrences run at once (`max_runs`)."""

    policy: str = LATEST
    window: Duration | None = None
    max_runs: int | None = None

    @property
    def runs_at_most(self) -> int:
        """How many missed occurrences `all` runs at once."""
        return self.max_runs or DEFAULT_MAX_RUNS

    @property
    def too_old(self) -> timedelta | None:
        """How late an occurrence may be and still run; None: any."""
        if self.window is not None:
            return self.window.value
        return ON_TIME if self.policy == NONE else None


@dataclass(frozen=True, slots=True)
class Missed:
    """An occurrence that does not run, and why."""

    time: datetime
    reason: str


def catch_up(policy: CatchUp | None, due: Sequence[datetime], now: datetime
             ) -> tuple[list[datetime], list[Missed]]:
    """Which of the occurrences due (in order, none after `now`) run, and which are missed
    and why."""
    chosen = policy or CatchUp()
    too_old = chosen.too_old
    runs: list[datetime] = []
    missed: list[Missed] = []
    for moment in due:
        if too_old is not None and now - moment > too_old:
            missed.append(Missed(moment, f"it was more than {format_iso_duration(too_old)} "
                                         "late (the job's catch-up window)"))
        else:
            runs.append(moment)
    keep = chosen.runs_at_most if chosen.policy == ALL else 1
    dropped, runs = runs[:-keep] if len(runs) > keep else [], runs[-keep:]
    if dropped:
        fired_for = runs[-1].isoformat()
        why = (f"the job fired once, for {fired_for}, for all the occurrences it missed"
               if chosen.policy != ALL else
               f"the job ran the latest {keep} (catchUp.maxRuns) of those it missed")
        missed.extend(Missed(moment, why) for moment in dropped)
    missed.sort(key=lambda item: item.time)
    return runs, missed


def validate_catch_up(catch_up_policy: CatchUp) -> None:
    """Raise InvalidField for a policy out of bounds."""
    if catch_up_policy.policy not in POLICIES:
        raise InvalidField("catchUp.policy", f"must be one of {', '.join(POLICIES)}")
    window = catch_up_policy.window
    if window is not None and window.value <= timedelta(0):
        raise InvalidField("catchUp.window", "must be longer than zero")
    runs = catch_up_policy.max_runs
    if runs is not None:
        if catch_up_policy.policy != ALL:
            raise InvalidField("catchUp.maxRuns", "is for the policy all only")
        if not 1 <= runs <= MAX_RUNS:
            raise InvalidField("catchUp.maxRuns", f"must be between 1 and {MAX_RUNS}")
