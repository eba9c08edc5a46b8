"""The management certificates unregistered from each subscription, so that a request
presenting one is logged as revoked rather than as unknown.

Revision ID: 0004
Revises: 0003
Created: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision: str | None = "0003"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    """Create `revoked_certificates`."""
    op.create_table(
        "revoked_certificates",
        sa.Column("subscription_id", sa.String(length=36), nullable=False),
        sa.Column("thumbprint", sa.String(length=40), nullable=False),
        sa.Column("revoked_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["subscription_id"], ["subscriptions.id"],
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("subscription_id", "thumbprint"),
    )


def downgrade() -> None:
    """Drop it."""
    op.drop_table("revoked_certificates")
