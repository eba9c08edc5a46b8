"""Each history entry says what ran: its execution, and in a sequence its step.

Revision ID: 0006
Revises: 0005
Created: 2026-12-08
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision: str | None = "0005"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    """Add `job_history.execution_id`, `step_index` and `step_name`, NULL in the entries
    written before: what ran then was not kept."""
    op.add_column("job_history", sa.Column("execution_id", sa.String(length=32), nullable=True))
    op.add_column("job_history", sa.Column("step_index", sa.Integer(), nullable=True))
    op.add_column("job_history", sa.Column("step_name", sa.String(length=64), nullable=True))


def downgrade() -> None:
    """Drop them."""
    with op.batch_alter_table("job_history") as batch:
        batch.drop_column("step_name")
        batch.drop_column("step_index")
        batch.drop_column("execution_id")
