"""The engines' heartbeat to an outside monitor: when the cluster last called
`engine.heartbeat_url`, and the occurrences missed since.

Revision ID: 0005
Revises: 0004
Created: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision: str | None = "0004"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    """Create `cluster_heartbeat` with its one row, never pinged: the engines count the
    occurrences they record as missed in it from now on."""
    table = op.create_table(
        "cluster_heartbeat",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("pinged_at", sa.DateTime(), nullable=True),
        sa.Column("missed", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.bulk_insert(table, [{"id": 1, "pinged_at": None, "missed": 0}])


def downgrade() -> None:
    """Drop it."""
    op.drop_table("cluster_heartbeat")
