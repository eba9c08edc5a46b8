"""The dashboard: who last set a job's state, when and why; the audit of changes; the
events of an execution; sign-in links and sessions.

Revision ID: 0009
Revises: 0008
Created: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision: str | None = "0008"
branch_labels: str | None = None
depends_on: str | None = None

# The events of executions taken over from a dead node, which the engine page counts.
TAKEN_OVER = "kind = 'taken_over'"


def upgrade() -> None:
    """Add the four tables and the job's three columns."""
    # Added in place: a batch copy of `jobs` on SQLite would take its history with it.
    op.add_column("jobs", sa.Column("state_note", sa.String(length=1024), nullable=True))
    op.add_column("jobs", sa.Column("state_changed_by", sa.String(length=200), nullable=True))
    op.add_column("jobs", sa.Column("state_changed_at", sa.DateTime(), nullable=True))
    op.create_table(
        "execution_events",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
                  primary_key=True, autoincrement=True),
        sa.Column("execution_id", sa.String(length=32),
                  sa.ForeignKey("executions.id", ondelete="CASCADE"), nullable=False),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("node", sa.String(length=64), nullable=True),
        sa.Column("attempt", sa.Integer(), nullable=True),
        sa.Column("detail", sa.Text(), nullable=True),
    )
    op.create_index("ix_execution_events_execution", "execution_events",
                    ["execution_id", "id"])
    op.create_index("ix_execution_events_taken_over", "execution_events", ["at"],
                    sqlite_where=sa.text(TAKEN_OVER), postgresql_where=sa.text(TAKEN_OVER))
    op.create_table(
        "audit_events",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
                  primary_key=True, autoincrement=True),
        sa.Column("subscription_id", sa.String(length=36),
                  sa.ForeignKey("subscriptions.id", ondelete="CASCADE"), nullable=False),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("kind", sa.String(length=48), nullable=False),
        sa.Column("cloud_service", sa.String(length=100), nullable=True),
        sa.Column("collection", sa.String(length=100), nullable=True),
        sa.Column("job_id", sa.String(length=100), nullable=True),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.Column("note", sa.String(length=1024), nullable=True),
        sa.Column("request_id", sa.String(length=64), nullable=False),
    )
    op.create_index("ix_audit_events_target", "audit_events",
                    ["subscription_id", "cloud_service", "collection", "job_id", "id"])
    op.create_table(
        "dashboard_links",
        sa.Column("token_hash", sa.String(length=64), primary_key=True),
        sa.Column("subscription_id", sa.String(length=36),
                  sa.ForeignKey("subscriptions.id", ondelete="CASCADE"), nullable=False),
        sa.Column("thumbprint", sa.String(length=40), nullable=False),
        sa.Column("expires_at", sa.DateTime(), nullable=False),
    )
    op.create_index("ix_dashboard_links_expires_at", "dashboard_links", ["expires_at"])
    op.create_table(
        "dashboard_sessions",
        sa.Column("token_hash", sa.String(length=64), primary_key=True),
        sa.Column("subscription_id", sa.String(length=36),
                  sa.ForeignKey("subscriptions.id", ondelete="CASCADE"), nullable=False),
        sa.Column("thumbprint", sa.String(length=40), nullable=False),
        sa.Column("csrf_token", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("last_seen_at", sa.DateTime(), nullable=False),
    )
    op.create_index("ix_dashboard_sessions_last_seen_at", "dashboard_sessions",
                    ["last_seen_at"])


def downgrade() -> None:
    """Drop them."""
    op.drop_table("dashboard_sessions")
    op.drop_table("dashboard_links")
    op.drop_table("audit_events")
    op.drop_table("execution_events")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("state_changed_at")
        batch.drop_column("state_changed_by")
        batch.drop_column("state_note")
