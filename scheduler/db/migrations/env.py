"""Alembic's environment: migrations run on the connection `scheduler.db.schema` passes in."""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

from scheduler.db.models import Base


def run_on(connection: Connection) -> None:
    """Run the migrations Alembic was asked for on one connection, in one transaction.

    SQLite cannot alter most of a table in place: batch mode copies the table instead.
    """
    context.configure(connection=connection, target_metadata=Base.metadata,
                      render_as_batch=connection.dialect.name == "sqlite",
                      transaction_per_migration=False)
    with context.begin_transaction():
        context.run_migrations()


run_on(context.config.attributes["connection"])
