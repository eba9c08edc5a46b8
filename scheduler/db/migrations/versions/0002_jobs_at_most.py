"""Collections keep a bound on how many jobs they hold, so that a create counts nothing.

Revision ID: 0002
Revises: 0001
Created: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision: str | None = "0001"
branch_labels: str | None = None
depends_on: str | None = None

# The open statuses of an execution (scheduler.domain.states.OPEN_STATUSES, as they were).
OPEN = ("pending", "running", "paused")


def upgrade() -> None:
    """Add `job_collections.jobs_at_most`, set to each collection's jobs and open inline
    runs."""
    op.add_column("job_collections", sa.Column(
        "jobs_at_most", sa.Integer(), server_default="0", nullable=False))
    collections = sa.table("job_collections", sa.column("id"), sa.column("jobs_at_most"))
    jobs = sa.table("jobs", sa.column("collection_id"))
    executions = sa.table("executions", sa.column("collection_id"), sa.column("job_pk"),
                          sa.column("status"))
    held = (
        sa.select(sa.func.count()).select_from(jobs)
        .where(jobs.c.collection_id == collections.c.id).scalar_subquery()
        + sa.select(sa.func.count()).select_from(executions).where(
            executions.c.collection_id == collections.c.id, executions.c.job_pk.is_(None),
            executions.c.status.in_(OPEN)).scalar_subquery()
    )
    op.execute(collections.update().values(jobs_at_most=held))


def downgrade() -> None:
    """Drop the bound."""
    with op.batch_alter_table("job_collections") as batch:
        batch.drop_column("jobs_at_most")
