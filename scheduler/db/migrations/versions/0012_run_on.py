"""Engine nodes by name: each node's stable name, and the names an execution may run on.

Revision ID: 0012
Revises: 0011
Created: 2026-12-10
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision: str | None = "0011"
branch_labels: str | None = None
depends_on: str | None = None

# The executions that only named nodes may run (see `RUN_ON_WHERE` in the models).
RUN_ON = "run_on IS NOT NULL"


def upgrade() -> None:
    """Add the two columns, empty in the rows there are: nodes before them have no name,
    and executions before them run on any node."""
    # Added in place: a batch copy of `executions` on SQLite would rewrite the whole table.
    op.add_column("engine_nodes", sa.Column("name", sa.String(64), nullable=True))
    op.add_column("executions", sa.Column("run_on", sa.Text(), nullable=True))
    op.create_index("ix_executions_run_on", "executions", ["status", "run_on"],
                    sqlite_where=sa.text(RUN_ON), postgresql_where=sa.text(RUN_ON))


def downgrade() -> None:
    """Drop them."""
    op.drop_index("ix_executions_run_on", table_name="executions")
    with op.batch_alter_table("executions") as batch:
        batch.drop_column("run_on")
    with op.batch_alter_table("engine_nodes") as batch:
        batch.drop_column("name")
