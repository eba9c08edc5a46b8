"""The schema, as typed SQLAlchemy 2 models."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
    false,
    text,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# The executions that are occurrences of a schedule, unique per (job, scheduled time).
OCCURRENCE_WHERE = "trigger = 'schedule'"
# The executions that are runs of inline definitions: they have no job.
INLINE_WHERE = "job_pk IS NULL"
# Executions that only named nodes may run: the few that can wait for nodes are found by it.
RUN_ON_WHERE = "run_on IS NOT NULL"
# The executions that wait for a callback.
CALLBACK_WHERE = "callback_deadline IS NOT NULL"
# The events that say an execution was taken over from a dead node: few, counted by node.
TAKEN_OVER_WHERE = "kind = 'taken_over'"
# The jobs disabled until a given time: few, the earliest of them read by the engine.
PAUSED_WHERE = "disabled_until IS NOT NULL"


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every database (SQLite keeps no zone)."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        """Store naive UTC."""
        return None if value is None else _naive_utc(value)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        """Read back as aware UTC."""
        if value is None:
            return None
        assert isinstance(value, datetime)
        return value.replace(tzinfo=UTC)

    # SQLite keeps datetimes as text. SQLAlchemy's own DATETIME makes it in two steps, the
    # second a %-format of seven fields; the engine binds about a dozen datetimes per
    # execution, so on SQLite the same text (same format, same order) is made in one.

    def bind_processor(self, dialect: Dialect) -> Callable[[datetime | None], Any] | None:
        """On SQLite, the text SQLAlchemy's DATETIME stores, made in one step."""
        if dialect.name == "sqlite":
            return _sqlite_text
        return super().bind_processor(dialect)

    def result_processor(self, dialect: Dialect, coltype: Any
                         ) -> Callable[[Any], datetime | None] | None:
        """On SQLite, that text read back as aware UTC in one step."""
        if dialect.name == "sqlite":
            return _sqlite_datetime
        return super().result_processor(dialect, coltype)


# The engine's datetimes are almost all in the `UTC` singleton (the clock's and those read
# back), so that case skips the conversion and, on SQLite, the parsing of a zone.

def _naive_utc(value: datetime) -> datetime:
    if value.tzinfo is UTC:
        return value.replace(tzinfo=None)
    if value.tzinfo is None:
        raise ValueError("naive datetime given to a UTC column")
    return value.astimezone(UTC).replace(tzinfo=None)


def _sqlite_text(value: datetime | None) -> str | None:
    if value is None:
        return None
    if value.tzinfo is UTC:  # the same text, less its "+00:00"
        return value.isoformat(" ", "microseconds")[:-6]
    return _naive_utc(value).isoformat(" ", "microseconds")


def _sqlite_datetime(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value + "+00:00")


# BIGINT on PostgreSQL, INTEGER (the rowid alias) on SQLite.
BigId = BigInteger().with_variant(Integer, "sqlite")


class Base(DeclarativeBase):
    """Base of every model."""


class Subscription(Base):
    """A tenant: owns management certificates and cloud services."""

    __tablename__ = "subscriptions"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class ManagementCertificate(Base):
    """A client certificate registered to a subscription, by thumbprint."""

    __tablename__ = "management_certificates"

    subscription_id: Mapped[str] = mapped_column(
        ForeignKey("subscriptions.id", ondelete="CASCADE"), primary_key=True
    )
    thumbprint: Mapped[str] = mapped_column(String(40), primary_key=True)
    der: Mapped[bytes] = mapped_column(LargeBinary)
    not_after: Mapped[datetime] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)

    __table_args__ = (Index("ix_certificates_thumbprint", "thumbprint"),)


class ServicePrincipal(Base):
    """A client id and secret that may ask the service's token endpoint for bearer tokens
    for one subscription; only the secret's hash is kept."""

    __tablename__ = "service_principals"

    client_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    subscription_id: Mapped[str] = mapped_column(
        ForeignKey("subscriptions.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(100))
    secret_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class AccessToken(Base):
    """A bearer token the service issued, by the hash of its text: to a service principal
    (its subscription), or to a management certificate (the subscriptions it is registered
    to when the token is used)."""

    __tablename__ = "access_tokens"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    client_id: Mapped[str | None] = mapped_column(
        ForeignKey("service_principals.client_id", ondelete="CASCADE"), nullable=True,
        index=True,
    )
    thumbprint: Mapped[str | None] = mapped_column(String(40), nullable=True)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class RevokedCertificate(Base):
    """A certificate unregistered from a subscription: remembered so that a request that
    still presents it is logged as revoked, not as unknown."""

    __tablename__ = "revoked_certificates"

    subscription_id: Mapped[str] = mapped_column(
        ForeignKey("subscriptions.id", ondelete="CASCADE"), primary_key=True
    )
    thumbprint: Mapped[str] = mapped_column(String(40), primary_key=True)
    revoked_at: Mapped[datetime] = mapped_column(UTCDateTime)


class RegistryVersion(Base):
    """One row whose version moves whenever the set of certificates changes."""

    __tablename__ = "registry_version"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version: Mapped[int] = mapped_column(BigInteger)


class CloudService(Base):
    """A region-bound container of job collections."""

    __tablename__ = "cloud_services"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    subscription_id: Mapped[str] = mapped_column(
        ForeignKey("subscriptions.id", ondelete="CASCADE")
    )
    name: Mapped[str] = mapped_column(String(100))
    name_key: Mapped[str] = mapped_column(String(100))
    label: Mapped[str] = mapped_column(String(100))
    description: Mapped[str] = mapped_column(String(1024))
    geo_region: Mapped[str] = mapped_column(String(100))
    email: Mapped[str | None] = mapped_column(String(256), nullable=True)
    lifecycle: Mapped[str] = mapped_column(String(16))
    etag: Mapped[str] = mapped_column(String(36))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)

    __table_args__ = (UniqueConstraint("subscription_id", "name_key"),)


class JobCollection(Base):
    """A set of jobs sharing a plan and quota."""

    __tablename__ = "job_collections"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    cloud_service_id: Mapped[int] = mapped_column(
        ForeignKey("cloud_services.id", ondelete="CASCADE")
    )
    name: Mapped[str] = mapped_column(String(100))
    name_key: Mapped[str] = mapped_column(String(100))
    label: Mapped[str] = mapped_column(String(400))
    plan: Mapped[str] = mapped_column(String(32))
    max_job_count: Mapped[int | None] = mapped_column(Integer, nullable=True)
    max_job_occurrence: Mapped[int | None] = mapped_column(Integer, nullable=True)
    max_recurrence_frequency: Mapped[str | None] = mapped_column(String(16), nullable=True)
    max_recurrence_interval: Mapped[int | None] = mapped_column(Integer, nullable=True)
    state: Mapped[str] = mapped_column(String(16))
    lifecycle: Mapped[str] = mapped_column(String(16))
    last_operation: Mapped[str] = mapped_column(String(16))
    etag: Mapped[str] = mapped_column(String(36))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # At least as many as the collection's jobs and open runs of inline definitions: each
    # create adds one, a delete nothing (so that deletes share no row), and a create that
    # would pass the quota by it counts them and sets it to the count.
    jobs_at_most: Mapped[int] = mapped_column(Integer, server_default="0")
    # Resource Manager's view of a collection: `disable` disabled every job, and the
    # collection reads `Disabled` until `enable`; its tags, as a JSON object.
    jobs_disabled: Mapped[bool] = mapped_column(Boolean, server_default=false())
    tags: Mapped[str | None] = mapped_column(Text, nullable=True)
    # The alert rules of its jobs that have none of their own, as their `alerts` document.
    default_alerts: Mapped[str | None] = mapped_column(Text, nullable=True)

    __table_args__ = (UniqueConstraint("cloud_service_id", "name_key"),)


class Job(Base):
    """A job: its definition as a canonical document, secrets apart and encrypted."""

    __tablename__ = "jobs"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    collection_id: Mapped[int] = mapped_column(
        ForeignKey("job_collections.id", ondelete="CASCADE")
    )
    job_id: Mapped[str] = mapped_column(String(100))
    job_key: Mapped[str] = mapped_column(String(100))
    definition: Mapped[str] = mapped_column(Text)
    secrets: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    state: Mapped[str] = mapped_column(String(16))
    state_details: Mapped[str | None] = mapped_column(String(1024), nullable=True)
    etag: Mapped[str] = mapped_column(String(36))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    next_execution_time: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    last_execution_time: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    execution_count: Mapped[int] = mapped_column(Integer, default=0)
    failure_count: Mapped[int] = mapped_column(Integer, default=0)
    faulted_count: Mapped[int] = mapped_column(Integer, default=0)
    # Kept beside the document so quota changes can be checked without reading every job.
    shortest_gap_seconds: Mapped[int | None] = mapped_column(Integer, nullable=True)
    uses_authentication: Mapped[bool] = mapped_column(default=False)
    # Who last set the job's state through the API or the dashboard, when, and why.
    state_note: Mapped[str | None] = mapped_column(String(1024), nullable=True)
    state_changed_by: Mapped[str | None] = mapped_column(String(200), nullable=True)
    state_changed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # A disabled job's time to be enabled again (by the engine); None: it waits for nobody.
    disabled_until: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)

    __table_args__ = (
        UniqueConstraint("collection_id", "job_key"),
        Index("ix_jobs_collection_state_key", "collection_id", "state", "job_key"),
        Index("ix_jobs_due", "next_execution_time"),
        Index("ix_jobs_disabled_until", "disabled_until", sqlite_where=text(PAUSED_WHERE),
              postgresql_where=text(PAUSED_WHERE)),
    )


class Calendar(Base):
    """A job collection's named exclusion calendar: the days it excludes, as its JSON
    document (`scheduler.domain.calendars`), found by its name in lower case."""

    __tablename__ = "calendars"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    collection_id: Mapped[int] = mapped_column(
        ForeignKey("job_collections.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(64))
    name_key: Mapped[str] = mapped_column(String(64))
    document: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)

    __table_args__ = (UniqueConstraint("collection_id", "name_key"),)


class NotificationChannel(Base):
    """A job collection's named notification channel (`scheduler.domain.notifications`): its
    JSON document without secrets, and its secrets sealed by the home's key; found by its
    name in lower case."""

    __tablename__ = "notification_channels"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    collection_id: Mapped[int] = mapped_column(
        ForeignKey("job_collections.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(64))
    name_key: Mapped[str] = mapped_column(String(64))
    document: Mapped[str] = mapped_column(Text)
    secrets: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)

    __table_args__ = (UniqueConstraint("collection_id", "name_key"),)


class Alert(Base):
    """An alert made of a job's event (`scheduler.domain.alerts`), once per job, event and
    occurrence whichever node saw it, and its delivery to the channels its rules named: due
    at `next_attempt_at` while pending, leased to a node while it sends."""

    __tablename__ = "alerts"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    job_pk: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    event: Mapped[str] = mapped_column(String(16))
    occurrence: Mapped[str] = mapped_column(String(100))
    execution_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    facts: Mapped[str] = mapped_column(Text)  # JSON: what its message tells
    channels: Mapped[str] = mapped_column(Text)  # JSON: the channels' names
    status: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer, server_default="0")
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    lease_owner: Mapped[str | None] = mapped_column(String(64), nullable=True)
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # JSON: each channel's outcome so far, by its name.
    deliveries: Mapped[str | None] = mapped_column(Text, nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)

    __table_args__ = (
        UniqueConstraint("job_pk", "event", "occurrence", name="uq_alerts_occurrence"),
        Index("ix_alerts_due", "status", "next_attempt_at"),
        Index("ix_alerts_job", "job_pk", "created_at"),
    )


class AlertStreak(Base):
    """A job's streak of occurrences that ended failed, as its alert rules count it; only
    jobs with alert rules have one."""

    __tablename__ = "alert_streaks"

    job_pk: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"),
                                        primary_key=True, autoincrement=False)
    failures: Mapped[int] = mapped_column(Integer)
    alerted_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class HistoryEntry(Base):
    """One attempt of one job, as Azure's job history reports it, with what ran: the
    execution, and in a sequence the step (its index from 0 and its name). Entries written
    before these were kept have none of them, nor do those of an action that is not a
    sequence a step."""

    __tablename__ = "job_history"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    job_pk: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    timestamp: Mapped[datetime] = mapped_column(UTCDateTime)
    start_time: Mapped[datetime] = mapped_column(UTCDateTime)
    end_time: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    expected_execution_time: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    state: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16))
    action_name: Mapped[str] = mapped_column(String(16))
    message: Mapped[str] = mapped_column(Text)
    retry_count: Mapped[int] = mapped_column(Integer)
    repeat_count: Mapped[int] = mapped_column(Integer)
    execution_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    step_index: Mapped[int | None] = mapped_column(Integer, nullable=True)
    step_name: Mapped[str | None] = mapped_column(String(64), nullable=True)

    __table_args__ = (
        Index("ix_history_job_id", "job_pk", "id"),
        Index("ix_history_job_status_id", "job_pk", "status", "id"),
    )


class Operation(Base):
    """A durable record of an asynchronous management operation."""

    __tablename__ = "operations"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    subscription_id: Mapped[str] = mapped_column(String(36), index=True)
    kind: Mapped[str] = mapped_column(String(48))
    payload: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16))
    http_status: Mapped[int | None] = mapped_column(Integer, nullable=True)
    error_code: Mapped[str | None] = mapped_column(String(64), nullable=True)
    error_message: Mapped[str | None] = mapped_column(Text, nullable=True)
    lease_owner: Mapped[str | None] = mapped_column(String(64), nullable=True)
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)

    __table_args__ = (Index("ix_operations_status_lease", "status", "lease_until"),)


class Execution(Base):
    """One occurrence of a job, or one run started by hand: exactly one row per (job,
    scheduled time) of its schedule, leased while it runs.

    A run of an inline definition has no job: it carries its own definition and secrets.
    `revision` goes up with every change of status, and makes the execution's ETag.
    """

    __tablename__ = "executions"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    job_pk: Mapped[int | None] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"),
                                               nullable=True)
    collection_id: Mapped[int] = mapped_column(
        ForeignKey("job_collections.id", ondelete="CASCADE"))
    scheduled_time: Mapped[datetime] = mapped_column(UTCDateTime)
    trigger: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16))
    revision: Mapped[int] = mapped_column(Integer, default=0)
    action_name: Mapped[str] = mapped_column(String(16))
    attempt: Mapped[int] = mapped_column(Integer)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    step: Mapped[int | None] = mapped_column(Integer, nullable=True)
    steps: Mapped[str | None] = mapped_column(Text, nullable=True)
    repeat_count: Mapped[int] = mapped_column(Integer)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    lease_owner: Mapped[str | None] = mapped_column(String(64), nullable=True)
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    node: Mapped[str | None] = mapped_column(String(64), nullable=True)
    parameters: Mapped[str | None] = mapped_column(Text, nullable=True)
    output: Mapped[str | None] = mapped_column(Text, nullable=True)
    message: Mapped[str | None] = mapped_column(Text, nullable=True)
    definition: Mapped[str | None] = mapped_column(Text, nullable=True)
    secrets: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    start_time: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    end_time: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # The names of the only nodes that may run it, stored `,a,b,` (`domain.nodes`); None:
    # any node.
    run_on: Mapped[str | None] = mapped_column(Text, nullable=True)
    # A call that waits for its target's callback (`action.completion`): the SHA-256 (hex)
    # of the token its callback URL carries, never the token; until when it is waited for,
    # once the target answered 202; and the result the target posted, as JSON, until the
    # engine records it.
    callback_hash: Mapped[str | None] = mapped_column(String(64), nullable=True)
    callback_deadline: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    callback_result: Mapped[str | None] = mapped_column(Text, nullable=True)

    __table_args__ = (
        # Only the schedule's occurrences are unique: runs started by hand are not.
        Index("uq_executions_occurrence", "job_pk", "scheduled_time", unique=True,
              sqlite_where=text(OCCURRENCE_WHERE), postgresql_where=text(OCCURRENCE_WHERE)),
        Index("ix_executions_runnable", "status", "next_attempt_at"),
        Index("ix_executions_job", "job_pk", "created_at"),
        # Runs of inline definitions, by collection; those of jobs are found by their job,
        # so that the executions the engine makes maintain no index for this.
        Index("ix_executions_inline", "collection_id", "created_at",
              sqlite_where=text(INLINE_WHERE), postgresql_where=text(INLINE_WHERE)),
        # Those of them still open, counted when they may be waiting for their nodes; the
        # executions of jobs that run on any node maintain no index for this.
        Index("ix_executions_run_on", "status", "run_on",
              sqlite_where=text(RUN_ON_WHERE), postgresql_where=text(RUN_ON_WHERE)),
        # Those waiting for a callback, counted for a metric: the others maintain no index.
        Index("ix_executions_callback", "callback_deadline",
              sqlite_where=text(CALLBACK_WHERE), postgresql_where=text(CALLBACK_WHERE)),
    )


class ExecutionEvent(Base):
    """Something that happened to an execution, recorded by the node it happened on as it
    happened: leased, sent, answered, retried, taken over, canceled. Bounded per execution,
    and deleted with it."""

    __tablename__ = "execution_events"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    execution_id: Mapped[str] = mapped_column(
        ForeignKey("executions.id", ondelete="CASCADE"))
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    kind: Mapped[str] = mapped_column(String(32))
    node: Mapped[str | None] = mapped_column(String(64), nullable=True)
    attempt: Mapped[int | None] = mapped_column(Integer, nullable=True)
    detail: Mapped[str | None] = mapped_column(Text, nullable=True)

    __table_args__ = (
        Index("ix_execution_events_execution", "execution_id", "id"),
        # Partial: the engine's other events never touch it.
        Index("ix_execution_events_taken_over", "at", sqlite_where=text(TAKEN_OVER_WHERE),
              postgresql_where=text(TAKEN_OVER_WHERE)),
    )


class AuditEvent(Base):
    """A change made through the API or the dashboard: who (the certificate's name), what,
    when, and the note given. Names, not keys, so that it outlives what it names."""

    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    subscription_id: Mapped[str] = mapped_column(
        ForeignKey("subscriptions.id", ondelete="CASCADE"))
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    actor: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(48))
    cloud_service: Mapped[str | None] = mapped_column(String(100), nullable=True)
    collection: Mapped[str | None] = mapped_column(String(100), nullable=True)
    job_id: Mapped[str | None] = mapped_column(String(100), nullable=True)
    detail: Mapped[str | None] = mapped_column(Text, nullable=True)
    note: Mapped[str | None] = mapped_column(String(1024), nullable=True)
    request_id: Mapped[str] = mapped_column(String(64))

    __table_args__ = (
        Index("ix_audit_events_target", "subscription_id", "cloud_service", "collection",
              "job_id", "id"),
    )


class DashboardLink(Base):
    """A one-time sign-in link for the dashboard, by the hash of its token: it opens a
    session for the certificate it was made for, once, until it expires."""

    __tablename__ = "dashboard_links"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    subscription_id: Mapped[str] = mapped_column(
        ForeignKey("subscriptions.id", ondelete="CASCADE"))
    thumbprint: Mapped[str] = mapped_column(String(40))
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)


class DashboardSession(Base):
    """A dashboard session, by the hash of its cookie: one certificate's view of one
    subscription, with the CSRF token its forms carry."""

    __tablename__ = "dashboard_sessions"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    subscription_id: Mapped[str] = mapped_column(
        ForeignKey("subscriptions.id", ondelete="CASCADE"))
    thumbprint: Mapped[str] = mapped_column(String(40))
    csrf_token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)


class EngineNode(Base):
    """An engine node's heartbeat: renewed every second or so while the node runs. A node
    whose heartbeat is older than `engine.dead_after_seconds` is dead, and the executions
    it held are taken over at once rather than when their leases run out."""

    __tablename__ = "engine_nodes"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    heartbeat_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # The attempts the node failed before their call could be made, in the minute before its
    # last heartbeat, by reason (JSON: {"secret": 1}); None when there were none. `/readyz`,
    # served by other processes, sums those of the live nodes.
    unrunnable_last_minute: Mapped[str | None] = mapped_column(Text, nullable=True)
    # The node's stable name (`engine.node_name`), which jobs' `runOn` lists; None for a
    # node of a version before names.
    name: Mapped[str | None] = mapped_column(String(64), nullable=True)


class ClusterHeartbeat(Base):
    """The engines' heartbeat to an outside monitor (`engine.heartbeat_url`): one row (id
    1). The node that moves `pinged_at` on, once an interval has passed since it last moved,
    is the one that calls the monitor, so the whole cluster calls it once per interval.
    `missed` counts the occurrences recorded as missed since then, which make the call the
    `/fail` one."""

    __tablename__ = "cluster_heartbeat"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    pinged_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    missed: Mapped[int] = mapped_column(Integer, default=0)


class Home(Base):
    """The home the database belongs to: one row (id 1), written by `init` or else by the
    first node that starts on the database. `key_check` is a known text sealed with the
    home's secret key: a node whose key file cannot open it holds another home's keys, and
    is refused, since it could open none of the secrets stored here."""

    __tablename__ = "home"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key_check: Mapped[bytes] = mapped_column(LargeBinary)


# Core handles on the tables the engine writes with set-based statements.
JOBS = cast(Table, Job.__table__)
EXECUTIONS = cast(Table, Execution.__table__)
NOTIFICATION_CHANNELS = cast(Table, NotificationChannel.__table__)
HISTORY = cast(Table, HistoryEntry.__table__)
OPERATIONS = cast(Table, Operation.__table__)
COLLECTIONS = cast(Table, JobCollection.__table__)
ENGINE_NODES = cast(Table, EngineNode.__table__)
HOME = cast(Table, Home.__table__)
CLUSTER_HEARTBEAT = cast(Table, ClusterHeartbeat.__table__)
ALERTS = cast(Table, Alert.__table__)
ALERT_STREAKS = cast(Table, AlertStreak.__table__)
CLOUD_SERVICES = cast(Table, CloudService.__table__)
