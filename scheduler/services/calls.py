"""One API call as the use cases see it, and what every write call ends with: its record,
pollable by its request id, and the engines woken once it commits."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy.orm import Session

from scheduler.db.notify import announce_jobs_changed, announce_on_commit
from scheduler.db.session import Database
from scheduler.security.secrets import SecretBox
from scheduler.services.operations import record_finished_operation
from scheduler.settings import PlanSettings


@dataclass(frozen=True, slots=True)
class Call:
    """Who makes a call and when, and what its writes follow: the plans, the secret box, the
    home whose engines it wakes, and how far ahead those engines look (`wake_horizon`: an
    engine readies calls, and sleeps, for at most that long); and whom the audit names as
    making it (`actor`: the certificate's name, or the service principal's)."""

    request_id: str
    subscription_id: str
    now: datetime
    plans: Mapping[str, PlanSettings]
    box: SecretBox
    home: Path
    wake_horizon: timedelta
    actor: str = ""


def engines_must_know(fire_times: Iterable[datetime | None], now: datetime,
                      horizon: timedelta) -> bool:
    """Whether a job changed with these next fire times (before and after) must be signalled
    to the engines: one of them falls within `horizon`, or has passed. Later ones every
    engine finds on its next pass."""
    return any(moment is not None and moment <= now + horizon for moment in fire_times)


def record_and_wake(session: Session, call: Call, kind: str, status: int, *,
                    fire_times: Iterable[datetime | None] | None = None,
                    canceled: Iterable[str] = (), wake: bool = True) -> None:
    """Make the call pollable, recorded with the status it answers; and wake the engines
    once the change is committed (naming the executions `canceled`): unless not to `wake`
    and nothing was canceled, or, given a job's next fire times before and after the
    change, unless each is so far off that every engine finds it in time without a
    signal."""
    record_finished_operation(session, call.request_id, call.subscription_id, kind, status,
                              call.now)
    ids = list(canceled)
    if not (wake or ids):
        return
    if fire_times is None or engines_must_know(fire_times, call.now, call.wake_horizon):
        announce_on_commit(session, call.home, ids)


def wake_on_commit(session: Session, home: Path) -> None:
    """Wake the engines once the session's change commits (a collection suspended: they
    drop calls readied for its jobs)."""
    announce_on_commit(session, home)


def wake_after_commit(db: Database, home: Path) -> None:
    """Wake the engines after a change committed outside a session of the call (a cloud
    service or collection set to be deleted): they drop calls readied for its jobs."""
    announce_jobs_changed(db, home)
