"""The schema's revision: Alembic's migrations applied to a database, and checked before use."""

from __future__ import annotations

from functools import cache
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError as AlembicCommandError
from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection

from scheduler.db.session import Database

MIGRATIONS = Path(__file__).parent / "migrations"
# The revision whose tables a database made before migrations existed already holds.
FIRST_REVISION = "0001"
# Two nodes upgrading one PostgreSQL database at once take turns on this advisory lock.
UPGRADE_LOCK = 7_346_013


class SchemaError(Exception):
    """The database's schema is not the one this code runs on; the message says what to do."""


def alembic_config(connection: Connection | None = None) -> Config:
    """Alembic's configuration, without an `alembic.ini`: the scripts, and the connection."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


@cache
def head_revision() -> str:
    """The revision this code's models are at."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None, "the migrations have no head"
    return head


def current_revision(db: Database) -> str | None:
    """The database's revision; None when it has no schema at all."""
    with db.engine.connect() as conn:
        revision = _revision_of(conn)
        conn.rollback()
        return revision


def _revision_of(conn: Connection) -> str | None:
    """The revision Alembic recorded, or FIRST_REVISION for tables made before migrations."""
    revision = MigrationContext.configure(conn).get_current_revision()
    if revision is None and inspect(conn).has_table("jobs"):
        return FIRST_REVISION
    return revision


def upgrade_schema(db: Database) -> tuple[str | None, str]:
    """Bring the database to the head revision in one transaction: (revision before, after)."""
    with db.engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": UPGRADE_LOCK})
        before = _revision_of(conn)
        if before is not None and before != head_revision():
            _require_known(before)
        config = alembic_config(conn)
        if before == FIRST_REVISION and MigrationContext.configure(
                conn).get_current_revision() is None:
            command.stamp(config, FIRST_REVISION)
        command.upgrade(config, "head")
        return before, head_revision()


def _require_known(revision: str) -> None:
    """A database at a revision these migrations do not hold was made by newer code."""
    scripts = ScriptDirectory.from_config(alembic_config())
    try:
        known = scripts.get_revision(revision) is not None
    except AlembicCommandError:
        known = False
    if not known:
        raise SchemaError(f"the database's schema is at revision {revision}, which this "
                          f"version of scheduler does not know (it knows up to "
                          f"{head_revision()}): run a newer scheduler")


def require_current_schema(db: Database, upgrade_command: str) -> None:
    """Refuse to run on a database without the schema, or at another revision."""
    revision = current_revision(db)
    if revision == head_revision():
        return
    if revision is None:
        raise SchemaError(f"the database {db.url_for_people} has no scheduler schema: "
                          f"run `{upgrade_command}` (or `scheduler init` for a new home)")
    _require_known(revision)
    raise SchemaError(f"the database {db.url_for_people} is at schema revision {revision}, "
                      f"behind this version's {head_revision()}: run `{upgrade_command}`")
