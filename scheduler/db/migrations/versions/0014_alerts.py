"""Alerts: the alerts made of jobs' events, each once per job, event and occurrence, with
their deliveries; each job's streak of failures as its alert rules count it; a collection's
default alert rules.

Revision ID: 0014
Revises: 0013
Created: 2026-12-12
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision: str | None = "0013"
branch_labels: str | None = None
depends_on: str | None = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    """Add the two tables and the collections' column, empty."""
    op.create_table(
        "alerts",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("job_pk", BIG_ID, sa.ForeignKey("jobs.id", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("event", sa.String(16), nullable=False),
        sa.Column("occurrence", sa.String(100), nullable=False),
        sa.Column("execution_id", sa.String(32), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("facts", sa.Text(), nullable=False),
        sa.Column("channels", sa.Text(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("next_attempt_at", sa.DateTime(), nullable=True),
        sa.Column("lease_owner", sa.String(64), nullable=True),
        sa.Column("lease_until", sa.DateTime(), nullable=True),
        sa.Column("deliveries", sa.Text(), nullable=True),
        sa.Column("finished_at", sa.DateTime(), nullable=True),
        sa.UniqueConstraint("job_pk", "event", "occurrence", name="uq_alerts_occurrence"),
    )
    op.create_index("ix_alerts_due", "alerts", ["status", "next_attempt_at"])
    op.create_index("ix_alerts_job", "alerts", ["job_pk", "created_at"])
    op.create_table(
        "alert_streaks",
        sa.Column("job_pk", BIG_ID, sa.ForeignKey("jobs.id", ondelete="CASCADE"),
                  primary_key=True, autoincrement=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("alerted_at", sa.DateTime(), nullable=True),
    )
    op.add_column("job_collections", sa.Column("default_alerts", sa.Text(), nullable=True))


def downgrade() -> None:
    """Drop them."""
    with op.batch_alter_table("job_collections") as batch:
        batch.drop_column("default_alerts")
    op.drop_table("alert_streaks")
    op.drop_index("ix_alerts_job", table_name="alerts")
    op.drop_index("ix_alerts_due", table_name="alerts")
    op.drop_table("alerts")
