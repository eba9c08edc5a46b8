"""Results that come back later: what an execution waiting for its target's callback keeps
(the hash of its callback URL's token, until when it waits, the result posted).

Revision ID: 0015
Revises: 0014
Created: 2026-12-13
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision: str | None = "0014"
branch_labels: str | None = None
depends_on: str | None = None

# The executions that wait for a callback (see `CALLBACK_WHERE` in the models).
CALLBACK = "callback_deadline IS NOT NULL"


def upgrade() -> None:
    """Add the three columns, empty in the rows there are: none of them waits."""
    # Added in place: a batch copy of `executions` on SQLite would rewrite the whole table.
    op.add_column("executions", sa.Column("callback_hash", sa.String(64), nullable=True))
    op.add_column("executions", sa.Column("callback_deadline", sa.DateTime(), nullable=True))
    op.add_column("executions", sa.Column("callback_result", sa.Text(), nullable=True))
    op.create_index("ix_executions_callback", "executions", ["callback_deadline"],
                    sqlite_where=sa.text(CALLBACK), postgresql_where=sa.text(CALLBACK))


def downgrade() -> None:
    """Drop them."""
    op.drop_index("ix_executions_callback", table_name="executions")
    with op.batch_alter_table("executions") as batch:
        batch.drop_column("callback_result")
        batch.drop_column("callback_deadline")
        batch.drop_column("callback_hash")
