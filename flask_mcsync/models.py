"""The ``mcsync_*`` tables, kept in the host's database.

They are declared on a metadata of our own (:data:`metadata`) rather than on the host's
``db.Model``, so the extension can be imported before any app exists and a host can hand
the metadata to its own Alembic. Rows are read and written through the host's
Flask-SQLAlchemy session: the outbox row of a signup commits or rolls back with it.

Statuses and kinds are short strings, not database enums, so adding one needs no
migration. Timestamps are stored in UTC and always come back timezone-aware.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

from .statuses import (
    OUTBOX_WAITING,
    BatchStatus,
    ChunkStatus,
    EventStatus,
    OutboxStatus,
    RunStatus,
)
from .times import utcnow


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp that is UTC on the way in and timezone-aware on the way out.

    SQLite has no time zones and hands back naive datetimes; without this, comparing a
    stored time with ``utcnow()`` raises on SQLite and works on PostgreSQL.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc) if value is not None else None

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)
        return value


metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)


class Base(DeclarativeBase):
    metadata = metadata
    type_annotation_map = {datetime: UTCDateTime()}


class Settings(Base):
    """The shop owner's choices. One row (id 1)."""

    __tablename__ = "mcsync_settings"

    id: Mapped[int] = mapped_column(primary_key=True)
    list_id: Mapped[str | None] = mapped_column(sa.String(64))
    list_name: Mapped[str | None] = mapped_column(sa.String(200))
    double_optin: Mapped[bool] = mapped_column(default=False)
    batch_size: Mapped[int] = mapped_column(default=500)
    auto_sync: Mapped[bool] = mapped_column(default=True)
    first_export_at: Mapped[datetime | None]
    # "Connect Mailchimp's changes": the secret in the webhook's URL (never shown whole)
    # and the id Mailchimp gave the webhook we registered.
    webhook_secret: Mapped[str | None] = mapped_column(sa.String(64))
    webhook_id: Mapped[str | None] = mapped_column(sa.String(64))
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class ExclusionRule(Base):
    __tablename__ = "mcsync_exclusion_rules"
    __table_args__ = (sa.UniqueConstraint("kind", "value", name="uq_mcsync_rule_kind_value"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(sa.String(16))
    value: Mapped[str] = mapped_column(sa.String(254))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Run(Base):
    """One sync: a manual export, an auto-sync of one address, or a re-sync.

    ``active_list_id`` holds the audience while an export is running and is NULL once it
    ends; its unique index is what makes "one manual run per audience" hold even when two
    "Synchronize" clicks race.
    """

    __tablename__ = "mcsync_runs"
    __table_args__ = (
        sa.Index("ix_mcsync_runs_created_at", "created_at"),
        # Whether another sync of an audience may have written since a moment
        # (outcomes.others_wrote_since): its runs not ended, or ended since then.
        sa.Index("ix_mcsync_runs_list_finished", "list_id", "finished_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(sa.String(16))  # export | auto | resync
    # What a single sync was, in the shop's words: signup | optin | optout |
    # address_change | resync (NULL for exports and runs older than the column).
    sync_reason: Mapped[str | None] = mapped_column(sa.String(24))
    list_id: Mapped[str] = mapped_column(sa.String(64))
    status: Mapped[str] = mapped_column(sa.String(16), default=RunStatus.QUEUED.value)
    active_list_id: Mapped[str | None] = mapped_column(sa.String(64), unique=True)
    started_by: Mapped[str] = mapped_column(sa.String(120), default="")
    batch_size: Mapped[int] = mapped_column(default=0)
    status_if_new: Mapped[str] = mapped_column(sa.String(16), default="subscribed")
    # The owner chose to send without Mailchimp's required merge field check.
    skip_merge_validation: Mapped[bool] = mapped_column(default=False, server_default=sa.false())
    # Planning reads the source in primary-key order; the cursor lets a killed planner resume.
    planned_through: Mapped[str | None] = mapped_column(sa.String(64))
    planning_done: Mapped[bool] = mapped_column(default=False)
    # The planner holds the run until lease_until; past it, the sweep re-queues planning.
    lease_until: Mapped[datetime | None]
    lease_token: Mapped[str | None] = mapped_column(sa.String(32))
    batch_count: Mapped[int] = mapped_column(default=0)
    # Kept by the batches in the transaction that ends or retries one, so that the
    # progress window reads one row whatever the number of batches.
    batches_done: Mapped[int] = mapped_column(default=0, server_default="0")
    batches_failed: Mapped[int] = mapped_column(default=0, server_default="0")
    retries: Mapped[int] = mapped_column(default=0, server_default="0")
    most_retries: Mapped[int] = mapped_column(default=0, server_default="0")
    retry_seconds: Mapped[float] = mapped_column(sa.Float, default=0.0, server_default="0")
    total: Mapped[int] = mapped_column(default=0)
    excluded: Mapped[int] = mapped_column(default=0)
    invalid: Mapped[int] = mapped_column(default=0)
    duplicates: Mapped[int] = mapped_column(default=0)
    created: Mapped[int] = mapped_column(default=0)
    updated: Mapped[int] = mapped_column(default=0)
    skipped: Mapped[int] = mapped_column(default=0)
    errors: Mapped[int] = mapped_column(default=0)
    # Contacts Mailchimp holds archived: left archived, neither created nor updated.
    archived: Mapped[int] = mapped_column(default=0, server_default="0")
    # Fresh opt-ins of unsubscribed members: Mailchimp sent its confirmation e-mail.
    confirmations: Mapped[int] = mapped_column(default=0, server_default="0")
    message: Mapped[str | None] = mapped_column(sa.Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]


class Batch(Base):
    """One batch of a manual export: one Mailchimp batch operation.

    ``payload`` holds the batch's addresses and merge fields as planned, so a batch can be
    re-sent identically after a crash or when Mailchimp's results expired.
    """

    __tablename__ = "mcsync_batches"
    __table_args__ = (
        sa.UniqueConstraint("run_id", "seq", name="uq_mcsync_batch_run_seq"),
        sa.Index("ix_mcsync_batches_status_lease", "status", "lease_until"),
        # The progress window's few rows of each status, and the count of those in flight.
        sa.Index("ix_mcsync_batches_run_status_seq", "run_id", "status", "seq"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(sa.ForeignKey("mcsync_runs.id", ondelete="CASCADE"))
    seq: Mapped[int]
    # A retry batch re-sends the addresses of batch ``retry_of`` that failed transiently.
    retry_of: Mapped[int | None]
    status: Mapped[str] = mapped_column(sa.String(16), default=BatchStatus.WAITING.value)
    size: Mapped[int] = mapped_column(default=0)
    first_address: Mapped[str] = mapped_column(sa.String(254), default="")
    last_address: Mapped[str] = mapped_column(sa.String(254), default="")
    mailchimp_batch_id: Mapped[str | None] = mapped_column(sa.String(64))
    total_operations: Mapped[int] = mapped_column(default=0)
    finished_operations: Mapped[int] = mapped_column(default=0)
    created: Mapped[int] = mapped_column(default=0)
    updated: Mapped[int] = mapped_column(default=0)
    errors: Mapped[int] = mapped_column(default=0)
    archived: Mapped[int] = mapped_column(default=0, server_default="0")
    # The retry budget counts failed tries of one step, each step on its own, so a storm
    # that makes every step fail now and then does not add up to a give-up:
    attempts: Mapped[int] = mapped_column(default=0)  # failed sends in a row
    poll_failures: Mapped[int] = mapped_column(default=0)  # failed polls in a row
    # Mailchimp lost the batch or its results, so it was sent again; never reset. A
    # retry batch starts from its parent's count: it is the same addresses' next round.
    resends: Mapped[int] = mapped_column(default=0, server_default="0")
    retries: Mapped[int] = mapped_column(default=0)  # every passing failure, for the record
    # Seconds of backoff those failures added, for the record.
    retry_seconds: Mapped[float] = mapped_column(sa.Float, default=0.0, server_default="0")
    # A worker holds a batch until lease_until; past it, the sweep hands it to another.
    lease_until: Mapped[datetime | None]
    # The job holding the lease passes this token to the job it schedules (the next poll),
    # so that job can take the batch back before the lease runs out.
    lease_token: Mapped[str | None] = mapped_column(sa.String(32))
    last_error: Mapped[str | None] = mapped_column(sa.Text)
    submitted_at: Mapped[datetime | None]
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    # Last in the table: SQLite keeps a large value in overflow pages that a read of any
    # column stored after it walks, so the progress window's reads (which never need
    # the payload) would cost more with each batch they show.
    payload: Mapped[list[Any]] = mapped_column(sa.JSON, default=list)


class PlanChunk(Base):
    """One key range of a run's source, planned by one job (see :mod:`planner`).

    A run's planning is cut into chunks of the source's primary key, after ``after``
    (exclusive) up to ``through`` (inclusive; NULL for the last chunk, which reads to the
    end), so several workers plan one run side by side. Each chunk keeps its own cursor
    and lease, like the run did when one job planned it all.
    """

    __tablename__ = "mcsync_plan_chunks"
    __table_args__ = (sa.UniqueConstraint("run_id", "seq", name="uq_mcsync_plan_chunk_run_seq"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(sa.ForeignKey("mcsync_runs.id", ondelete="CASCADE"))
    seq: Mapped[int]
    # Keys as JSON, like Run.planned_through: the host's key may be an integer or a string.
    after: Mapped[str | None] = mapped_column(sa.String(64))
    through: Mapped[str | None] = mapped_column(sa.String(64))
    planned_through: Mapped[str | None] = mapped_column(sa.String(64))
    status: Mapped[str] = mapped_column(sa.String(16), default=ChunkStatus.WAITING.value)
    lease_until: Mapped[datetime | None]
    lease_token: Mapped[str | None] = mapped_column(sa.String(32))


class PlannedAddress(Base):
    """An address a run's planning already put in a batch, by 60 bits of its Mailchimp id.

    The primary key does the de-duplication across chunks and across a planner's restart,
    so no process keeps every address of the audience in memory. The rows live only while
    the run is planned: the chunk that ends planning deletes them.
    """

    __tablename__ = "mcsync_planned_addresses"

    # No foreign key: a row per address of every export, each of which would run the key's
    # check (see the mcsync_0003 revision). Runs are never deleted.
    run_id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    key: Mapped[int] = mapped_column(sa.BigInteger, primary_key=True, autoincrement=False)


class Outcome(Base):
    """What happened to one address in one sync: the history the dashboard reads."""

    __tablename__ = "mcsync_outcomes"
    __table_args__ = (
        # Every lookup by address: the diagnostic's history, the created-or-updated probe,
        # the first export's check on a signup. The dearest index to write: its entries
        # fall on random pages, 63-83 % of writing a batch's 1,000 rows on SQLite, and
        # more as the history grows (benchmarks/bench_outcome_rows.py).
        sa.Index("ix_mcsync_outcomes_hash_created", "email_hash", "created_at"),
        sa.Index("ix_mcsync_outcomes_created", "created_at"),
        sa.Index("ix_mcsync_outcomes_run_outcome", "run_id", "outcome"),
        # The dashboard's "errors of the period", by time. It holds every row, errors or
        # not: a partial index (errors only) would be cheaper to write, but the query
        # binds the outcome as a parameter, which SQLite cannot match to its condition.
        sa.Index("ix_mcsync_outcomes_outcome_created", "outcome", "created_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    # The run and batch ids carry no foreign keys: an export writes a row per address,
    # and on PostgreSQL each key's check per row cost more than the row's own insert (the
    # mcsync_0003 revision). Runs and batches are never deleted.
    run_id: Mapped[int]
    batch_id: Mapped[int | None]
    email: Mapped[str] = mapped_column(sa.String(320))
    email_hash: Mapped[str] = mapped_column(sa.String(32))
    # created | updated | unsubscribed | archived | confirmation | skipped | error
    outcome: Mapped[str] = mapped_column(sa.String(16))
    permanent: Mapped[bool] = mapped_column(default=False)
    error_title: Mapped[str | None] = mapped_column(sa.String(200))
    error_detail: Mapped[str | None] = mapped_column(sa.Text)
    mailchimp_status: Mapped[str | None] = mapped_column(sa.String(16))
    sent: Mapped[dict[str, Any] | None] = mapped_column(sa.JSON)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class OutboxItem(Base):
    """A change waiting to reach Mailchimp, written in the host's signup transaction."""

    __tablename__ = "mcsync_outbox"
    __table_args__ = (
        sa.Index("ix_mcsync_outbox_status_due", "status", "next_attempt_at"),
        sa.Index("ix_mcsync_outbox_hash_status", "email_hash", "status"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    # An OutboxAction, written by the hook. The default is the first build's, kept: a
    # row written without an action is not an opt-in (a signup would count as one).
    action: Mapped[str] = mapped_column(sa.String(16), default="upsert")
    email: Mapped[str] = mapped_column(sa.String(320))
    email_hash: Mapped[str] = mapped_column(sa.String(32))
    previous_email: Mapped[str | None] = mapped_column(sa.String(320))
    merge_fields: Mapped[dict[str, Any] | None] = mapped_column(sa.JSON)
    status: Mapped[str] = mapped_column(sa.String(16), default=OutboxStatus.PENDING.value)
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_error: Mapped[str | None] = mapped_column(sa.Text)
    run_id: Mapped[int | None] = mapped_column(sa.ForeignKey("mcsync_runs.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    @classmethod
    def waiting(cls) -> sa.ColumnElement[bool]:
        """The rows still to send: due or backing off, or claimed by a worker."""
        return cls.status.in_(sorted(OUTBOX_WAITING))


class WebhookEvent(Base):
    """One callback from Mailchimp, recorded before anything is done with it.

    The endpoint only writes this row and hands its id to a job, so Mailchimp gets its
    answer at once; if Redis is down the row waits for the sweep. ``digest`` (a hash of
    the raw body) is unique: a replayed callback is not recorded or applied twice.
    """

    __tablename__ = "mcsync_webhook_events"
    __table_args__ = (
        sa.Index("ix_mcsync_webhook_events_status_received", "status", "received_at"),
        sa.Index("ix_mcsync_webhook_events_hash", "email_hash"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    digest: Mapped[str] = mapped_column(sa.String(64), unique=True)
    type: Mapped[str] = mapped_column(sa.String(16), default="")
    fired_at: Mapped[datetime | None]
    email: Mapped[str] = mapped_column(sa.String(320), default="")
    email_hash: Mapped[str] = mapped_column(sa.String(32), default="")
    # received | applied | stale | ignored | invalid
    status: Mapped[str] = mapped_column(sa.String(16), default=EventStatus.RECEIVED.value)
    message: Mapped[str | None] = mapped_column(sa.Text)
    payload: Mapped[dict[str, Any]] = mapped_column(sa.JSON, default=dict)
    run_id: Mapped[int | None] = mapped_column(sa.ForeignKey("mcsync_runs.id", ondelete="SET NULL"))
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    handled_at: Mapped[datetime | None]


class AudienceMember(Base):
    """What Mailchimp last told us about one member of the audience.

    Filled by reconcile (the whole audience the first time, then what changed) and by
    webhook events. ``changed_at`` is the time of the newest change applied: an event
    fired before it is stale and changes nothing. The drift report compares these rows
    with the shop; ``email_lower`` lets it join the shop's table on ``lower(email)``.
    """

    __tablename__ = "mcsync_audience_members"
    __table_args__ = (
        sa.Index("ix_mcsync_audience_members_email_lower", "email_lower"),
        sa.Index("ix_mcsync_audience_members_contact", "contact_id"),
    )

    email_hash: Mapped[str] = mapped_column(sa.String(32), primary_key=True)
    list_id: Mapped[str] = mapped_column(sa.String(64))
    email: Mapped[str] = mapped_column(sa.String(320))
    email_lower: Mapped[str] = mapped_column(sa.String(320))
    status: Mapped[str] = mapped_column(sa.String(16))
    merge_fields: Mapped[dict[str, Any] | None] = mapped_column(sa.JSON)
    contact_id: Mapped[str | None] = mapped_column(sa.String(64))
    changed_at: Mapped[datetime]
    seen_at: Mapped[datetime] = mapped_column(default=utcnow)
