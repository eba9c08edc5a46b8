"""Schema migrations: the migrated schema is the models', and upgrades keep what is stored."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import text
from sqlalchemy.orm import Session

from scheduler.db.models import (
    Base,
    Execution,
    HistoryEntry,
    Home,
    Job,
    JobCollection,
    RegistryVersion,
)
from scheduler.db.schema import (
    FIRST_REVISION,
    SchemaError,
    alembic_config,
    current_revision,
    head_revision,
    require_current_schema,
    upgrade_schema,
)
from scheduler.db.session import Database
from scheduler.security.secrets import SecretBox
from scheduler.services.home import (
    HOME_ROW,
    HomeKeyMismatch,
    check_home_key,
    holds_a_home,
    record_home_key,
)
from tests.support import fresh_postgres_schema

MADE = datetime(2026, 3, 1, 12, 0, 0)


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    """A database with nothing in it: a new SQLite file, or a new PostgreSQL schema."""
    if request.param == "sqlite":
        database = Database(f"sqlite:///{tmp_path / 'empty.db'}")
        yield database
        database.dispose()
        return
    with fresh_postgres_schema("m") as url:
        database = Database(url)
        yield database
        database.dispose()


def upgrade_to(db: Database, revision: str) -> None:
    """Apply the migrations up to one revision, as a database made back then had them."""
    with db.engine.begin() as conn:
        command.upgrade(alembic_config(conn), revision)


def fill_at_first_revision(db: Database) -> None:
    """One tenant's job with an execution and two history entries, written with the columns
    the first revision has (not through the models, which follow the head)."""
    rows: list[tuple[str, dict[str, object]]] = [
        ("subscriptions", {"id": "sub-1", "name": "team", "created_at": MADE}),
        ("cloud_services", {
            "id": 1, "subscription_id": "sub-1", "name": "CS1", "name_key": "cs1",
            "label": "cs", "description": "", "geo_region": "West Europe", "email": None,
            "lifecycle": "created", "etag": "e1", "created_at": MADE}),
        ("job_collections", {
            "id": 1, "cloud_service_id": 1, "name": "jc1", "name_key": "jc1", "label": "jc",
            "plan": "Standard", "max_job_count": 50, "max_job_occurrence": None,
            "max_recurrence_frequency": "Minute", "max_recurrence_interval": 1,
            "state": "Started", "lifecycle": "created", "last_operation": "create",
            "etag": "e2", "created_at": MADE, "updated_at": MADE}),
        ("jobs", {
            "id": 7, "collection_id": 1, "job_id": "Nightly", "job_key": "nightly",
            "definition": '{"action": {"type": "http"}}', "secrets": b"\x00sealed",
            "state": "Enabled", "state_details": None, "etag": "e3", "created_at": MADE,
            "updated_at": MADE, "next_execution_time": datetime(2026, 3, 2),
            "last_execution_time": MADE, "execution_count": 3, "failure_count": 1,
            "faulted_count": 0, "shortest_gap_seconds": 86400, "uses_authentication": False}),
        ("executions", {
            "id": "x" * 32, "job_pk": 7, "collection_id": 1, "scheduled_time": MADE,
            "trigger": "schedule", "status": "succeeded", "revision": 1,
            "action_name": "action", "attempt": 1, "attempts": 1, "step": None,
            "steps": None, "repeat_count": 3, "next_attempt_at": None, "lease_owner": None,
            "lease_until": None, "node": "n1", "parameters": None, "output": "200",
            "message": "ok", "definition": None, "secrets": None, "created_at": MADE,
            "start_time": MADE, "end_time": MADE}),
        ("job_history", {
            "id": 1, "job_pk": 7, "timestamp": MADE, "start_time": MADE, "end_time": MADE,
            "expected_execution_time": MADE, "state": "Enabled", "status": "Completed",
            "action_name": "MainAction", "message": "Http Action - Response from host: 200",
            "retry_count": 0, "repeat_count": 3}),
        ("job_history", {
            "id": 2, "job_pk": 7, "timestamp": MADE, "start_time": MADE, "end_time": None,
            "expected_execution_time": None, "state": "Enabled", "status": "Failed",
            "action_name": "ErrorAction", "message": "refused", "retry_count": 1,
            "repeat_count": 3}),
    ]
    with db.engine.begin() as conn:
        for name, values in rows:
            columns = [sa.column(key, sa.DateTime() if isinstance(value, datetime) else None)
                       for key, value in values.items()]
            conn.execute(sa.table(name, *columns).insert().values(values))


def test_the_migrated_schema_is_the_models(empty_db: Database) -> None:
    upgrade_schema(empty_db)
    with empty_db.engine.connect() as conn:
        difference = compare_metadata(MigrationContext.configure(conn, opts={
            "compare_type": True, "compare_server_default": True}), Base.metadata)
    assert difference == []


def test_an_upgrade_keeps_jobs_history_and_executions(empty_db: Database) -> None:
    upgrade_to(empty_db, FIRST_REVISION)
    fill_at_first_revision(empty_db)
    assert upgrade_schema(empty_db) == (FIRST_REVISION, head_revision())
    require_current_schema(empty_db, "scheduler db upgrade")
    with empty_db.snapshot() as session:
        job = session.get(Job, 7)
        assert job is not None
        assert (job.job_id, job.state, job.execution_count, job.secrets) == (
            "Nightly", "Enabled", 3, b"\x00sealed")
        assert job.next_execution_time == datetime(2026, 3, 2, tzinfo=UTC)
        execution = session.get(Execution, "x" * 32)
        assert execution is not None
        assert (execution.job_pk, execution.status, execution.scheduled_time) == (
            7, "succeeded", MADE.replace(tzinfo=UTC))
        history = session.scalars(sa.select(HistoryEntry).order_by(HistoryEntry.id)).all()
        assert [(h.status, h.action_name) for h in history] == [
            ("Completed", "MainAction"), ("Failed", "ErrorAction")]
        registry = session.get(RegistryVersion, 1)
        assert registry is not None and registry.version == 1
        collection = session.get(JobCollection, 1)
        assert collection is not None and collection.jobs_at_most == 1  # its one job


def test_history_written_before_it_kept_what_ran_names_no_execution_or_step(
        empty_db: Database) -> None:
    upgrade_to(empty_db, "0005")
    fill_at_first_revision(empty_db)
    upgrade_schema(empty_db)
    with empty_db.snapshot() as session:
        history = session.scalars(sa.select(HistoryEntry).order_by(HistoryEntry.id)).all()
        assert [(h.execution_id, h.step_index, h.step_name) for h in history] == [
            (None, None, None), (None, None, None)]


def test_the_upgrade_bounds_each_collection_by_its_jobs_and_open_inline_runs(
        empty_db: Database) -> None:
    upgrade_to(empty_db, FIRST_REVISION)
    fill_at_first_revision(empty_db)
    executions = sa.table("executions", *(sa.column(name) for name in (
        "id", "job_pk", "collection_id", "scheduled_time", "trigger", "status", "revision",
        "action_name", "attempt", "attempts", "repeat_count", "created_at")))
    with empty_db.engine.begin() as conn:
        for key, status in (("o", "pending"), ("p", "paused"), ("d", "completed")):
            conn.execute(executions.insert().values(
                id=key * 32, job_pk=None, collection_id=1, scheduled_time=MADE,
                trigger="manual", status=status, revision=1, action_name="action", attempt=0,
                attempts=0, repeat_count=0, created_at=MADE))
    upgrade_schema(empty_db)
    with empty_db.snapshot() as session:
        collection = session.get(JobCollection, 1)
        assert collection is not None and collection.jobs_at_most == 3  # a job, two open runs


def test_upgrading_twice_changes_nothing(empty_db: Database) -> None:
    assert upgrade_schema(empty_db) == (None, head_revision())
    assert upgrade_schema(empty_db) == (head_revision(), head_revision())
    assert current_revision(empty_db) == head_revision()


def test_tables_made_before_migrations_are_taken_as_the_first_revision(
        empty_db: Database) -> None:
    upgrade_to(empty_db, FIRST_REVISION)
    fill_at_first_revision(empty_db)
    with empty_db.engine.begin() as conn:
        conn.execute(text("DROP TABLE alembic_version"))
    assert current_revision(empty_db) == FIRST_REVISION
    upgrade_schema(empty_db)
    assert current_revision(empty_db) == head_revision()
    with empty_db.engine.connect() as conn:
        assert MigrationContext.configure(conn).get_current_revision() == head_revision()
    with empty_db.snapshot() as session:
        assert session.get(Job, 7) is not None


def test_a_database_without_the_schema_names_the_command(empty_db: Database) -> None:
    with pytest.raises(SchemaError, match=r"has no scheduler schema: run `scheduler db "
                                          r"upgrade --home H`"):
        require_current_schema(empty_db, "scheduler db upgrade --home H")


def test_a_database_from_newer_code_is_refused(empty_db: Database) -> None:
    upgrade_schema(empty_db)
    with empty_db.engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    with pytest.raises(SchemaError, match="revision 9999, which this version of scheduler "
                                          "does not know"):
        require_current_schema(empty_db, "scheduler db upgrade")
    with pytest.raises(SchemaError, match="run a newer scheduler"):
        upgrade_schema(empty_db)


def test_a_database_from_before_the_key_check_takes_the_first_starting_node_s_key(
        empty_db: Database) -> None:
    upgrade_to(empty_db, "0002")
    fill_at_first_revision(empty_db)
    upgrade_schema(empty_db)
    assert holds_a_home(empty_db)  # its subscription says so, though it has no check yet
    with empty_db.snapshot() as session:
        assert session.get(Home, HOME_ROW) is None
    first, stranger = SecretBox(SecretBox.new_key()), SecretBox(SecretBox.new_key())
    check_home_key(empty_db, first)
    with pytest.raises(HomeKeyMismatch):
        check_home_key(empty_db, stranger)
    check_home_key(empty_db, first)
    check_home_key(empty_db, SecretBox([SecretBox.new_key(), *first.keys]))  # rotated
    with empty_db.snapshot() as session:
        home = session.get(Home, HOME_ROW)
        assert home is not None and first.opens_key_check(home.key_check)
        assert not stranger.opens_key_check(home.key_check)
        assert first.keys[0] not in home.key_check  # a sealed text, not the key


@pytest.mark.postgres
def test_two_nodes_starting_at_once_with_different_keys_cannot_both_win() -> None:
    with fresh_postgres_schema("race") as url:
        db = Database(url)
        upgrade_schema(db)
        first, stranger = SecretBox(SecretBox.new_key()), SecretBox(SecretBox.new_key())
        refused: list[BaseException] = []

        def start_stranger() -> None:
            try:
                check_home_key(db, stranger)
            except HomeKeyMismatch as exc:
                refused.append(exc)

        with db.transaction() as session:
            record_home_key(session, first)  # not committed yet: the stranger reads no row
            racing = threading.Thread(target=start_stranger)
            racing.start()
            # The stranger's insert of the same row waits for this transaction's end.
            assert wait_for_lock(session, racing), "the second node's insert never waited"
        racing.join(30)
        assert not racing.is_alive() and len(refused) == 1
        check_home_key(db, first)
        db.dispose()


def wait_for_lock(session: Session, racing: threading.Thread, seconds: float = 30) -> bool:
    """Whether the racing thread's PostgreSQL session comes to wait for a lock this one
    holds: False at once if the thread ends without waiting."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        # Within a transaction, pg_stat_activity is read from a snapshot taken at the first
        # look: without clearing it, a thread that starts late is never seen waiting.
        session.execute(text("SELECT pg_stat_clear_snapshot()"))
        waiting = session.execute(text(
            "SELECT count(*) FROM pg_locks WHERE NOT granted AND pid <> pg_backend_pid()"
            " AND pid IN (SELECT pid FROM pg_stat_activity"
            " WHERE datname = current_database() AND query ILIKE '%INSERT INTO home%')"
        )).scalar_one()
        if waiting:
            return True
        racing.join(0.02)  # between looks, wait on the thread itself: it may end unblocked
        if not racing.is_alive():
            return False
    return False
