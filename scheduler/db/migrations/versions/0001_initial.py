"""The schema as it was when migrations began: tenants, collections, jobs, history, executions.

Revision ID: 0001
Revises:
Created: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None

# BIGINT on PostgreSQL, INTEGER (the rowid alias) on SQLite.
BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
# Aware UTC datetimes are stored naive (see scheduler.db.models.UTCDateTime).


def upgrade() -> None:
    """Create every table, and the certificate registry's one version row."""
    op.create_table(
        "engine_nodes",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("started_at", sa.DateTime(), nullable=False),
        sa.Column("heartbeat_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "operations",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("subscription_id", sa.String(length=36), nullable=False),
        sa.Column("kind", sa.String(length=48), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("http_status", sa.Integer(), nullable=True),
        sa.Column("error_code", sa.String(length=64), nullable=True),
        sa.Column("error_message", sa.Text(), nullable=True),
        sa.Column("lease_owner", sa.String(length=64), nullable=True),
        sa.Column("lease_until", sa.DateTime(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_operations_status_lease", "operations", ["status", "lease_until"])
    op.create_index("ix_operations_subscription_id", "operations", ["subscription_id"])
    op.create_table(
        "registry_version",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "subscriptions",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "cloud_services",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("subscription_id", sa.String(length=36), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("name_key", sa.String(length=100), nullable=False),
        sa.Column("label", sa.String(length=100), nullable=False),
        sa.Column("description", sa.String(length=1024), nullable=False),
        sa.Column("geo_region", sa.String(length=100), nullable=False),
        sa.Column("email", sa.String(length=256), nullable=True),
        sa.Column("lifecycle", sa.String(length=16), nullable=False),
        sa.Column("etag", sa.String(length=36), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["subscription_id"], ["subscriptions.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("subscription_id", "name_key"),
    )
    op.create_table(
        "management_certificates",
        sa.Column("subscription_id", sa.String(length=36), nullable=False),
        sa.Column("thumbprint", sa.String(length=40), nullable=False),
        sa.Column("der", sa.LargeBinary(), nullable=False),
        sa.Column("not_after", sa.DateTime(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["subscription_id"], ["subscriptions.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("subscription_id", "thumbprint"),
    )
    op.create_index("ix_certificates_thumbprint", "management_certificates", ["thumbprint"])
    op.create_table(
        "job_collections",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("cloud_service_id", BIG_ID, nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("name_key", sa.String(length=100), nullable=False),
        sa.Column("label", sa.String(length=400), nullable=False),
        sa.Column("plan", sa.String(length=32), nullable=False),
        sa.Column("max_job_count", sa.Integer(), nullable=True),
        sa.Column("max_job_occurrence", sa.Integer(), nullable=True),
        sa.Column("max_recurrence_frequency", sa.String(length=16), nullable=True),
        sa.Column("max_recurrence_interval", sa.Integer(), nullable=True),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("lifecycle", sa.String(length=16), nullable=False),
        sa.Column("last_operation", sa.String(length=16), nullable=False),
        sa.Column("etag", sa.String(length=36), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["cloud_service_id"], ["cloud_services.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("cloud_service_id", "name_key"),
    )
    op.create_table(
        "jobs",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("collection_id", BIG_ID, nullable=False),
        sa.Column("job_id", sa.String(length=100), nullable=False),
        sa.Column("job_key", sa.String(length=100), nullable=False),
        sa.Column("definition", sa.Text(), nullable=False),
        sa.Column("secrets", sa.LargeBinary(), nullable=True),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("state_details", sa.String(length=1024), nullable=True),
        sa.Column("etag", sa.String(length=36), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.Column("next_execution_time", sa.DateTime(), nullable=True),
        sa.Column("last_execution_time", sa.DateTime(), nullable=True),
        sa.Column("execution_count", sa.Integer(), nullable=False),
        sa.Column("failure_count", sa.Integer(), nullable=False),
        sa.Column("faulted_count", sa.Integer(), nullable=False),
        sa.Column("shortest_gap_seconds", sa.Integer(), nullable=True),
        sa.Column("uses_authentication", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(["collection_id"], ["job_collections.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("collection_id", "job_key"),
    )
    op.create_index("ix_jobs_collection_state_key", "jobs", ["collection_id", "state", "job_key"])
    op.create_index("ix_jobs_due", "jobs", ["next_execution_time"])
    op.create_table(
        "executions",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("job_pk", BIG_ID, nullable=True),
        sa.Column("collection_id", BIG_ID, nullable=False),
        sa.Column("scheduled_time", sa.DateTime(), nullable=False),
        sa.Column("trigger", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("action_name", sa.String(length=16), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("step", sa.Integer(), nullable=True),
        sa.Column("steps", sa.Text(), nullable=True),
        sa.Column("repeat_count", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(), nullable=True),
        sa.Column("lease_owner", sa.String(length=64), nullable=True),
        sa.Column("lease_until", sa.DateTime(), nullable=True),
        sa.Column("node", sa.String(length=64), nullable=True),
        sa.Column("parameters", sa.Text(), nullable=True),
        sa.Column("output", sa.Text(), nullable=True),
        sa.Column("message", sa.Text(), nullable=True),
        sa.Column("definition", sa.Text(), nullable=True),
        sa.Column("secrets", sa.LargeBinary(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("start_time", sa.DateTime(), nullable=True),
        sa.Column("end_time", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(["collection_id"], ["job_collections.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["job_pk"], ["jobs.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    inline = sa.text("job_pk IS NULL")
    op.create_index("ix_executions_inline", "executions", ["collection_id", "created_at"],
                    sqlite_where=inline, postgresql_where=inline)
    op.create_index("ix_executions_job", "executions", ["job_pk", "created_at"])
    op.create_index("ix_executions_runnable", "executions", ["status", "next_attempt_at"])
    occurrence = sa.text("trigger = 'schedule'")
    op.create_index("uq_executions_occurrence", "executions", ["job_pk", "scheduled_time"],
                    unique=True, sqlite_where=occurrence, postgresql_where=occurrence)
    op.create_table(
        "job_history",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("job_pk", BIG_ID, nullable=False),
        sa.Column("timestamp", sa.DateTime(), nullable=False),
        sa.Column("start_time", sa.DateTime(), nullable=False),
        sa.Column("end_time", sa.DateTime(), nullable=True),
        sa.Column("expected_execution_time", sa.DateTime(), nullable=True),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("action_name", sa.String(length=16), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("retry_count", sa.Integer(), nullable=False),
        sa.Column("repeat_count", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["job_pk"], ["jobs.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_history_job_id", "job_history", ["job_pk", "id"])
    op.create_index("ix_history_job_status_id", "job_history", ["job_pk", "status", "id"])
    registry = sa.table("registry_version", sa.column("id"), sa.column("version"))
    op.bulk_insert(registry, [{"id": 1, "version": 1}])


def downgrade() -> None:
    """Drop every table."""
    op.drop_table("job_history")
    op.drop_table("executions")
    op.drop_table("jobs")
    op.drop_table("job_collections")
    op.drop_table("management_certificates")
    op.drop_table("cloud_services")
    op.drop_table("subscriptions")
    op.drop_table("registry_version")
    op.drop_table("operations")
    op.drop_table("engine_nodes")
