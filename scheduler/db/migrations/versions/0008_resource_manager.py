"""Resource Manager: service principals, the bearer tokens issued to them, and a job
collection's `Disabled` state and tags.

Revision ID: 0008
Revises: 0007
Created: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision: str | None = "0007"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    """Add the two tables and the two columns; existing collections read `Enabled`."""
    op.create_table(
        "service_principals",
        sa.Column("client_id", sa.String(length=36), primary_key=True),
        sa.Column("subscription_id", sa.String(length=36),
                  sa.ForeignKey("subscriptions.id", ondelete="CASCADE"), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("secret_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
    )
    op.create_index("ix_service_principals_subscription_id", "service_principals",
                    ["subscription_id"])
    op.create_table(
        "access_tokens",
        sa.Column("token_hash", sa.String(length=64), primary_key=True),
        sa.Column("client_id", sa.String(length=36),
                  sa.ForeignKey("service_principals.client_id", ondelete="CASCADE"),
                  nullable=True),
        sa.Column("thumbprint", sa.String(length=40), nullable=True),
        sa.Column("expires_at", sa.DateTime(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
    )
    op.create_index("ix_access_tokens_client_id", "access_tokens", ["client_id"])
    op.create_index("ix_access_tokens_expires_at", "access_tokens", ["expires_at"])
    # Added in place: a batch copy of the table would take its jobs with the old one.
    op.add_column("job_collections", sa.Column("jobs_disabled", sa.Boolean(), nullable=False,
                                               server_default=sa.false()))
    op.add_column("job_collections", sa.Column("tags", sa.Text(), nullable=True))


def downgrade() -> None:
    """Drop them."""
    with op.batch_alter_table("job_collections") as batch:
        batch.drop_column("tags")
        batch.drop_column("jobs_disabled")
    op.drop_table("access_tokens")
    op.drop_table("service_principals")
