"""History retention: the newest entries per job, for a limited time."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from scheduler.clock import FrozenClock
from scheduler.db.models import HistoryEntry, Job
from scheduler.db.session import Database
from scheduler.engine.store import EngineStore
from tests.support import JOBS, Tenant, http_job


def _add_history(db: Database, clock: FrozenClock, count: int, age: timedelta) -> None:
    with db.transaction() as session:
        for job in session.scalars(select(Job)):
            for index in range(count):
                moment = clock.now() - age + timedelta(seconds=index)
                session.add(HistoryEntry(
                    job_pk=job.id, timestamp=moment, start_time=moment, end_time=moment,
                    expected_execution_time=moment, state="enabled", status="completed",
                    action_name="MainAction", message=f"{index}", retry_count=0,
                    repeat_count=index))


def test_history_keeps_the_newest_entries_per_job_and_drops_old_ones(
    collection: Tenant, db: Database, clock: FrozenClock
) -> None:
    for job_id in ("a", "b"):
        collection.call("PUT", f"{JOBS}/{job_id}", http_job())
    _add_history(db, clock, 5, timedelta(days=61))
    _add_history(db, clock, 12, timedelta(hours=1))
    with db.transaction() as session:
        removed = EngineStore.prune_history(session, clock.now(), keep=10,
                                            max_age=timedelta(days=60))
    assert removed == 2 * 5 + 2 * 2
    for job_id in ("a", "b"):
        entries = collection.call("GET", f"{JOBS}/{job_id}/history").get_json()
        assert [e["message"] for e in entries] == [str(i) for i in range(11, 1, -1)]


def test_finished_executions_are_pruned_like_history_but_open_ones_stay(
    collection: Tenant, db: Database, clock: FrozenClock
) -> None:
    from scheduler.db.models import Execution

    collection.call("PUT", f"{JOBS}/a", http_job())
    with db.transaction() as session:
        job = session.scalars(select(Job)).one()
        for index in range(6):
            session.add(Execution(
                id=f"{index:032d}", job_pk=job.id, collection_id=job.collection_id,
                scheduled_time=clock.now() - timedelta(days=70, minutes=index),
                trigger="schedule", status="pending" if index == 0 else "completed",
                action_name="MainAction", attempt=0, repeat_count=index,
                created_at=clock.now() - timedelta(days=70)))
    with db.transaction() as session:
        EngineStore.prune_history(session, clock.now(), keep=10, max_age=timedelta(days=60))
    with db.snapshot() as session:
        assert [e.status for e in session.scalars(select(Execution))] == ["pending"]
