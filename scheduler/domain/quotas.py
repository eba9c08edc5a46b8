"""Plans and quotas: how many jobs a collection holds and how often they may fire."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from scheduler.domain.recurrence import Recurrence, shortest_gap, unit_span

PLAN_ALIASES = {"premium": "P10Premium"}


class QuotaExceeded(Exception):
    """A job would break its collection's plan or quota."""


@dataclass(frozen=True)
class Limits:
    """The effective limits of one collection: the plan's, lowered by its own quota."""

    max_job_count: int
    min_recurrence: timedelta


# Azure's one plan whose jobs may not call out with authentication.
FREE_PLAN = "Free"


def allows_authentication(plan: str) -> bool:
    """Whether a plan lets jobs call out with authentication: every plan but Free."""
    return plan != FREE_PLAN


def canonical_plan(name: str, known: list[str]) -> str | None:
    """The plan's configured name for a name in any case, or None if it is unknown."""
    lowered = name.strip().lower()
    lowered = PLAN_ALIASES.get(lowered, lowered).lower()
    for plan in known:
        if plan.lower() == lowered:
            return plan
    return None


def effective_limits(
    plan_max_jobs: int,
    plan_min_recurrence: timedelta,
    quota_max_jobs: int | None,
    quota_frequency: str | None,
    quota_interval: int | None,
) -> Limits:
    """Combine a plan with a collection quota, which can only make limits stricter."""
    max_jobs = plan_max_jobs if quota_max_jobs is None else min(plan_max_jobs, quota_max_jobs)
    min_recurrence = plan_min_recurrence
    if quota_frequency is not None:
        quota_gap = unit_span(quota_frequency) * (quota_interval or 1)
        min_recurrence = max(min_recurrence, quota_gap)
    return Limits(max_jobs, min_recurrence)


def check_job_count(limits: Limits, job_count_after: int) -> None:
    """Refuse a collection that would hold more jobs than allowed."""
    if job_count_after > limits.max_job_count:
        raise QuotaExceeded(
            f"the job collection is full: its quota allows at most {limits.max_job_count} jobs"
        )


def check_recurrence(limits: Limits, recurrence: Recurrence | None) -> None:
    """Refuse a recurrence that fires more often than allowed."""
    if recurrence is None:
        return
    gap = shortest_gap(recurrence)
    if gap < limits.min_recurrence:
        raise QuotaExceeded(
            f"the job recurs every {_describe(gap)}, more often than the job collection's "
            f"quota allows (at most once every {_describe(limits.min_recurrence)})"
        )


def _describe(value: timedelta) -> str:
    seconds = int(value.total_seconds())
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds % size == 0 and seconds >= size:
            count = seconds // size
            return f"{count} {unit}{'s' if count != 1 else ''}"
    return f"{seconds} second{'s' if seconds != 1 else ''}"
