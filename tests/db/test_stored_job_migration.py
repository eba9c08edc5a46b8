"""The migration to the stored job form, on a database the release before it made.

`tests/data/release-0006/` holds what that release wrote, through its own `parse_job`,
`create_job` and `run_inline`: a SQLite home database at revision 0006 with a job of every
action type and authentication (secrets sealed under the API's field labels, as it sealed
them), a run of an inline definition, the home's `secret.key`, the job documents it was given
(`jobs.json`) and what its GET answered for each job (`shown.json`). After the upgrade each job
reads back, secrets and all, as this release reads the same document, and a GET answers the
same, key for key and in order.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import pytest
import sqlalchemy as sa
from alembic import command

from scheduler.api.jobs import job_json
from scheduler.api.schemas.jobs import parse_job
from scheduler.db.models import Execution, Job
from scheduler.db.schema import alembic_config, upgrade_schema
from scheduler.db.session import Database
from scheduler.db.stored_jobs import open_definition
from scheduler.security.secrets import SecretBox
from scheduler.services.records import StoredJob
from tests.support import fresh_postgres_schema

RELEASE = Path(__file__).parent.parent / "data" / "release-0006"
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
GIVEN: dict[str, Any] = json.loads((RELEASE / "jobs.json").read_text())
SHOWN: dict[str, Any] = json.loads((RELEASE / "shown.json").read_text())


def release_database(tmp_path: Path) -> Database:
    """A copy of the release's SQLite database, as it left it."""
    shutil.copy(RELEASE / "scheduler.db", tmp_path / "scheduler.db")
    return Database(f"sqlite:///{tmp_path / 'scheduler.db'}")


def copied_to(source: Database, url: str) -> Database:
    """A PostgreSQL database at revision 0006 holding every row of `source`."""
    target = Database(url)
    with target.engine.begin() as conn:
        command.upgrade(alembic_config(conn), "0006")
    tables = sa.MetaData()  # as the release left them: a later schema has more
    tables.reflect(source.engine)
    with source.snapshot() as src, target.transaction() as dst:
        for table in tables.sorted_tables:
            if table.name == "alembic_version":
                continue
            rows = [dict(row) for row in src.execute(table.select()).mappings()]
            if rows:
                dst.execute(table.delete())  # the rows a migration makes, such as the heartbeat
                dst.execute(table.insert(), rows)
    return target


@pytest.fixture(params=["sqlite", "postgresql"])
def upgraded(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    """The release's database upgraded to this version's schema, in SQLite or PostgreSQL."""
    source = release_database(tmp_path)
    if request.param == "sqlite":
        upgrade_schema(source)
        yield source
        source.dispose()
        return
    with fresh_postgres_schema("release") as url:
        target = copied_to(source, url)
        source.dispose()
        upgrade_schema(target)
        yield target
        target.dispose()


def box() -> SecretBox:
    """The release home's key."""
    return SecretBox.from_file(RELEASE / "secret.key")


def test_every_job_reads_back_with_its_secrets_as_this_release_reads_its_document(
        upgraded: Database) -> None:
    with upgraded.snapshot() as session:
        jobs = {job.job_id: job for job in session.scalars(sa.select(Job))}
        assert sorted(jobs) == sorted(GIVEN["jobs"])
        for job_id, document in GIVEN["jobs"].items():
            stored = jobs[job_id]
            assert json.loads(stored.definition)["v"] == 1
            expected = parse_job(document, now=NOW, brokers=GIVEN["brokers"],
                                 job_id=job_id).job
            assert open_definition(stored.definition, stored.secrets, box()) == expected, job_id


def test_a_get_answers_what_the_release_answered(upgraded: Database) -> None:
    with upgraded.engine.connect() as conn:
        rows = conn.execute(sa.select(Job.__table__)).all()
    for row in rows:
        answered = json.loads(job_json(cast("StoredJob", row)))
        assert json.dumps(answered) == json.dumps(SHOWN[row.job_id]), row.job_id


def test_an_inline_run_keeps_its_own_definition_and_secrets(upgraded: Database) -> None:
    with upgraded.snapshot() as session:
        [run] = session.scalars(sa.select(Execution).where(Execution.job_pk.is_(None)))
        assert run.definition is not None
        expected = parse_job(GIVEN["inline"], now=NOW).job
        assert open_definition(run.definition, run.secrets, box()) == expected


def migration_0007() -> Any:
    """The migration's module (its file name is not an identifier)."""
    path = (Path(__file__).parents[2] / "scheduler" / "db" / "migrations" / "versions"
            / "0007_stored_job_form.py")
    spec = importlib.util.spec_from_file_location("migration_0007", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_converted_or_unreadable_document_is_left_as_it_is(tmp_path: Path) -> None:
    db = release_database(tmp_path)
    upgrade_schema(db)
    with db.snapshot() as session:
        converted = [job.definition for job in session.scalars(sa.select(Job))]
    db.dispose()
    convert = migration_0007().convert
    assert [convert(text) for text in converted] == [None] * len(converted)
    assert convert('{"action": {"type": "http"}}') is None  # no request: the engine faults it
    assert convert("not json") is None
