"""What a job does with a new run while an earlier one is still open (its
`concurrencyPolicy`): run it as well (`allow`, as Azure's jobs do), skip it (`skip`), keep
one (`bufferOne`) or every one (`bufferAll`) waiting until the open one ends, or cancel the
open one and run the new one (`replace`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from scheduler.domain import InvalidField


class Overlap(StrEnum):
    """A job's concurrency policy."""

    ALLOW = "allow"
    SKIP = "skip"
    BUFFER_ONE = "bufferOne"
    BUFFER_ALL = "bufferAll"
    REPLACE = "replace"


POLICIES = tuple(policy.value for policy in Overlap)
# The message of an open run that a new run of its job replaced.
REPLACED_MESSAGE = ("Canceled because a later run of the job replaced it (concurrencyPolicy "
                    "replace).")


class Fate(StrEnum):
    """What becomes of one new run under a concurrency policy."""

    RUN = "run"  # made runnable at its time
    WAIT = "wait"  # made waiting: it runs once the job has no other run open before it
    # Made waiting until its time (`skip`): it runs if the run in its way ended by then, and
    # is skipped otherwise. A decision made ahead of an occurrence's time is made at it.
    WAIT_UNTIL_DUE = "waitUntilDue"
    SKIP = "skip"  # recorded skipped, never attempted


@dataclass(frozen=True, slots=True)
class Open:
    """A job's runs open when new ones are made: those running or due to (`active`), and
    those waiting behind them (`waiting`), by execution id."""

    active: Sequence[str] = ()
    waiting: Sequence[str] = ()

    @property
    def busy(self) -> bool:
        """Whether a new run would overlap an open one."""
        return bool(self.active or self.waiting)


@dataclass(frozen=True, slots=True)
class Decision:
    """What a policy makes of new runs: the fate of each, in order, and the open runs it
    cancels (`replace`)."""

    fates: tuple[Fate, ...]
    cancel: tuple[str, ...] = ()


def overlap_policy(value: str | None) -> Overlap:
    """The policy a stored or sent name stands for; `allow` when there is none."""
    return Overlap(value) if value else Overlap.ALLOW


def decide(policy: Overlap, open_runs: Open, times: Sequence[datetime], now: datetime
           ) -> Decision:
    """The fate of new runs of a job due at `times` (in order), made at `now`, whose open
    runs are `open_runs`: each new run counts as open for those after it."""
    count = len(times)
    if policy is Overlap.ALLOW:
        return Decision((Fate.RUN,) * count)
    if policy is Overlap.REPLACE:
        # Each new run replaces the one before it: only the last runs.
        last_only = (Fate.SKIP,) * (count - 1) + (Fate.RUN,) if count else ()
        return Decision(last_only, (*open_runs.active, *open_runs.waiting) if count else ())
    busy, waiting = open_runs.busy, len(open_runs.waiting)
    fates: list[Fate] = []
    for moment in times:
        if not busy:
            fates.append(Fate.RUN)
            busy = True
        elif policy is Overlap.BUFFER_ALL or (policy is Overlap.BUFFER_ONE and not waiting):
            fates.append(Fate.WAIT)
            waiting += 1
        elif policy is Overlap.SKIP and moment > now:
            fates.append(Fate.WAIT_UNTIL_DUE)
        else:
            fates.append(Fate.SKIP)
    return Decision(tuple(fates))


def skip_reason(policy: Overlap, blocking: str | None) -> str:
    """Why a run is skipped under `policy`, naming the open run in its way (if known)."""
    if policy is Overlap.REPLACE:
        return "a later occurrence replaced it (concurrencyPolicy replace)"
    behind = f" (execution {blocking})" if blocking else ""
    if policy is Overlap.SKIP:
        return f"an earlier run of the job was still open{behind} (concurrencyPolicy skip)"
    return (f"an earlier run of the job was still open{behind} and another was waiting "
            "(concurrencyPolicy bufferOne)")


def validate_overlap(value: object, name: str = "concurrencyPolicy") -> Overlap:
    """The policy named by `value`, in any case; InvalidField when it names none."""
    if isinstance(value, str):
        for policy in Overlap:
            if policy.value.lower() == value.lower():
                return policy
    raise InvalidField(name, f"must be one of {', '.join(POLICIES)}")
