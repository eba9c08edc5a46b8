"""A job disabled until a given time: the engine enables it again then.

Revision ID: 0011
Revises: 0010
Created: 2026-12-08
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision: str | None = "0010"
branch_labels: str | None = None
depends_on: str | None = None

# The few jobs that wait to be enabled: the engine's glance reads the earliest of them.
PAUSED = "disabled_until IS NOT NULL"


def upgrade() -> None:
    """Add the job's column, and an index of the jobs that have it."""
    # Added in place: a batch copy of `jobs` on SQLite would take its history with it.
    op.add_column("jobs", sa.Column("disabled_until", sa.DateTime(), nullable=True))
    op.create_index("ix_jobs_disabled_until", "jobs", ["disabled_until"],
                    sqlite_where=sa.text(PAUSED), postgresql_where=sa.text(PAUSED))


def downgrade() -> None:
    """Drop them."""
    op.drop_index("ix_jobs_disabled_until", table_name="jobs")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("disabled_until")
