"""Setting jobs' states as the dashboard does: one job or a chosen few, with a note; each
stamped with who, when and why, and recorded in the audit in the same transaction."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from scheduler.clock import FrozenClock
from scheduler.db.session import Database
from scheduler.domain.jobs import JobDefinition
from scheduler.security.secrets import SecretBox
from scheduler.services.audit import Target, read_changes
from scheduler.services.calls import Call
from scheduler.services.errors import BadRequest, NotFound
from scheduler.services.jobs import read_job, set_job_state, set_job_states
from scheduler.settings import Settings
from tests.support import JOBS, Tenant, http_job


def a_call(tenant: Tenant, settings: Settings, clock: FrozenClock, actor: str = "ops"
           ) -> Call:
    """A call of the tenant's, made by `actor` now."""
    return Call(request_id="0" * 32, subscription_id=tenant.subscription_id, now=clock.now(),
                plans=settings.plans,
                box=SecretBox.from_file(settings.path(settings.security.secret_key_file)),
                home=Path(settings.home), wake_horizon=timedelta(seconds=5), actor=actor)


def allow(_job_id: str, _definition: JobDefinition) -> None:
    """Let every job be enabled."""


def refuse(job_id: str, _definition: JobDefinition) -> None:
    """Let no job be enabled."""
    raise BadRequest(f"{job_id}: refused")


def changes(db: Database, tenant: Tenant, job_id: str | None = None) -> list[tuple[str, ...]]:
    """The audit of cs1/jc1 (or of one job of it), newest first, as (kind, job, actor,
    detail, note)."""
    with db.engine.connect() as conn:
        return [(c.kind, c.target.job_id or "", c.actor, c.detail or "", c.note or "")
                for c in read_changes(conn, tenant.subscription_id,
                                      Target("cs1", "jc1", job_id))]


def test_a_job_disabled_with_a_note_is_stamped_and_audited(
        collection: Tenant, db: Database, settings: Settings, clock: FrozenClock) -> None:
    assert collection.call("PUT", f"{JOBS}/job1", http_job()).status_code == 201
    clock.advance(timedelta(minutes=3))
    with db.transaction() as session:
        written = set_job_state(session, a_call(collection, settings, clock), "cs1", "jc1",
                                "JOB1", "disabled", "vendor outage", allow)
    assert written.job.state == "disabled" and not written.created
    with db.engine.connect() as conn:
        stored = read_job(conn, collection.subscription_id, "cs1", "jc1", "job1")
    assert (stored.state, stored.state_note, stored.state_changed_by,
            stored.state_changed_at) == ("disabled", "vendor outage", "ops", clock.now())
    assert stored.etag == written.job.etag
    assert changes(db, collection, "job1")[0] == (
        "job.state", "job1", "ops", "state: enabled → disabled", "vendor outage")


def test_setting_the_state_a_job_has_without_a_note_changes_nothing(
        collection: Tenant, db: Database, settings: Settings, clock: FrozenClock) -> None:
    collection.call("PUT", f"{JOBS}/job1", http_job(state="disabled", stateNote="kept"))
    before = changes(db, collection)
    with db.transaction() as session:
        written = set_job_state(session, a_call(collection, settings, clock), "cs1", "jc1",
                                "job1", "disabled", None, allow)
    assert written.job.state_note == "kept" and written.job.state_changed_by == "first"
    assert changes(db, collection) == before
    with db.transaction() as session:
        cleared = set_job_state(session, a_call(collection, settings, clock), "cs1", "jc1",
                                "job1", "disabled", "", allow)
    assert (cleared.job.state_note, cleared.job.state_changed_by) == (None, "ops")
    assert changes(db, collection)[0][:4] == ("job.state", "job1", "ops", "note changed")


def test_enabling_asks_the_check_and_a_refusal_changes_nothing(
        collection: Tenant, db: Database, settings: Settings, clock: FrozenClock) -> None:
    collection.call("PUT", f"{JOBS}/job1", http_job(
        state="disabled", recurrence={"frequency": "hour"}, startTime="2026-03-01T00:00:00Z"))
    before = changes(db, collection)
    with pytest.raises(BadRequest), db.transaction() as session:
        set_job_state(session, a_call(collection, settings, clock), "cs1", "jc1", "job1",
                      "enabled", "back", refuse)
    assert changes(db, collection) == before
    with db.transaction() as session:
        written = set_job_state(session, a_call(collection, settings, clock), "cs1", "jc1",
                                "job1", "enabled", "back", allow)
    # Enabled again, it replays nothing: it fires next at its first hour from now on.
    assert written.job.next_execution_time == clock.now()
    assert written.job.state == "enabled" and written.job.state_note == "back"
    with pytest.raises(BadRequest), db.transaction() as session:
        set_job_state(session, a_call(collection, settings, clock), "cs1", "jc1", "job1",
                      "completed", None, allow)


def test_a_chosen_few_are_set_together_and_an_unknown_one_sets_none(
        collection: Tenant, db: Database, settings: Settings, clock: FrozenClock) -> None:
    for job_id in ("a", "b", "c"):
        collection.call("PUT", f"{JOBS}/{job_id}", http_job())
    with pytest.raises(NotFound), db.transaction() as session:
        set_job_states(session, a_call(collection, settings, clock), "cs1", "jc1",
                       ["a", "missing"], "disabled", "freeze", allow)
    assert [job["state"] for job in collection.call("GET", JOBS).get_json()] == [
        "enabled"] * 3
    with db.transaction() as session:
        written = set_job_states(session, a_call(collection, settings, clock), "cs1", "jc1",
                                 ["c", "A", "a"], "disabled", "freeze", allow)
    assert [(job.job_id, job.state, job.state_note) for job in written] == [
        ("c", "disabled", "freeze"), ("a", "disabled", "freeze")]
    assert [job["state"] for job in collection.call("GET", JOBS).get_json()] == [
        "disabled", "enabled", "disabled"]
    assert [change[:2] for change in changes(db, collection)[:2]] == [
        ("job.state", "a"), ("job.state", "c")]
