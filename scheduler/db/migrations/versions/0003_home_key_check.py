"""The home a database belongs to, with a check of its secret key; and each engine node's
count of the attempts it could not make in the last minute, for `/readyz`.

Revision ID: 0003
Revises: 0002
Created: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision: str | None = "0002"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    """Create `home`, left empty: only a node holding the key can write its check, and the
    first one that starts does. Add `engine_nodes.unrunnable_last_minute`."""
    op.create_table(
        "home",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("key_check", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.add_column("engine_nodes", sa.Column("unrunnable_last_minute", sa.Text(), nullable=True))


def downgrade() -> None:
    """Drop them."""
    with op.batch_alter_table("engine_nodes") as batch:
        batch.drop_column("unrunnable_last_minute")
    op.drop_table("home")
