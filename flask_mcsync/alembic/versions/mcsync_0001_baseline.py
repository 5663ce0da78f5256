"""The mcsync tables as of 0.1.0 (legacy schema version 5).

A fresh database gets every table. A database made before Alembic (it has
``mcsync_schema``) is brought to schema version 5 in place, keeping its rows, and leaves
``mcsync_schema`` behind: this revision stands for version 5 from then on.

Revision ID: mcsync_0001
Revises:
Create Date: 2026-11-25
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

from flask_mcsync import legacy_schema

revision: str = "mcsync_0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = ("mcsync",)
depends_on: str | Sequence[str] | None = None

# Timestamps are UTC; flask_mcsync.models.UTCDateTime adds that in Python only.
Timestamp = sa.DateTime(timezone=True)


def _counter(name: str, type_: sa.types.TypeEngine[Any] | None = None) -> sa.Column[Any]:
    # Counters added to existing rows: a server default, so older rows read 0.
    return sa.Column(name, type_ or sa.Integer(), server_default="0", nullable=False)


def _settings() -> None:
    op.create_table(
        "mcsync_settings",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("list_id", sa.String(length=64), nullable=True),
        sa.Column("list_name", sa.String(length=200), nullable=True),
        sa.Column("double_optin", sa.Boolean(), nullable=False),
        sa.Column("batch_size", sa.Integer(), nullable=False),
        sa.Column("auto_sync", sa.Boolean(), nullable=False),
        sa.Column("first_export_at", Timestamp, nullable=True),
        sa.Column("webhook_secret", sa.String(length=64), nullable=True),
        sa.Column("webhook_id", sa.String(length=64), nullable=True),
        sa.Column("updated_at", Timestamp, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_mcsync_settings"),
    )


def _exclusion_rules() -> None:
    op.create_table(
        "mcsync_exclusion_rules",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("value", sa.String(length=254), nullable=False),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_mcsync_exclusion_rules"),
        sa.UniqueConstraint("kind", "value", name="uq_mcsync_rule_kind_value"),
    )


def _runs() -> None:
    op.create_table(
        "mcsync_runs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("sync_reason", sa.String(length=24), nullable=True),
        sa.Column("list_id", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("active_list_id", sa.String(length=64), nullable=True),
        sa.Column("started_by", sa.String(length=120), nullable=False),
        sa.Column("batch_size", sa.Integer(), nullable=False),
        sa.Column("status_if_new", sa.String(length=16), nullable=False),
        sa.Column("skip_merge_validation", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("planned_through", sa.String(length=64), nullable=True),
        sa.Column("planning_done", sa.Boolean(), nullable=False),
        sa.Column("lease_until", Timestamp, nullable=True),
        sa.Column("lease_token", sa.String(length=32), nullable=True),
        sa.Column("batch_count", sa.Integer(), nullable=False),
        _counter("batches_done"),
        _counter("batches_failed"),
        _counter("retries"),
        _counter("most_retries"),
        _counter("retry_seconds", sa.Float()),
        sa.Column("total", sa.Integer(), nullable=False),
        sa.Column("excluded", sa.Integer(), nullable=False),
        sa.Column("invalid", sa.Integer(), nullable=False),
        sa.Column("duplicates", sa.Integer(), nullable=False),
        sa.Column("created", sa.Integer(), nullable=False),
        sa.Column("updated", sa.Integer(), nullable=False),
        sa.Column("skipped", sa.Integer(), nullable=False),
        sa.Column("errors", sa.Integer(), nullable=False),
        _counter("archived"),
        _counter("confirmations"),
        sa.Column("message", sa.Text(), nullable=True),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.Column("started_at", Timestamp, nullable=True),
        sa.Column("finished_at", Timestamp, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_mcsync_runs"),
        sa.UniqueConstraint("active_list_id", name="uq_mcsync_runs_active_list_id"),
    )
    op.create_index("ix_mcsync_runs_created_at", "mcsync_runs", ["created_at"])


def _batches() -> None:
    op.create_table(
        "mcsync_batches",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("retry_of", sa.Integer(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("first_address", sa.String(length=254), nullable=False),
        sa.Column("last_address", sa.String(length=254), nullable=False),
        sa.Column("mailchimp_batch_id", sa.String(length=64), nullable=True),
        sa.Column("total_operations", sa.Integer(), nullable=False),
        sa.Column("finished_operations", sa.Integer(), nullable=False),
        sa.Column("created", sa.Integer(), nullable=False),
        sa.Column("updated", sa.Integer(), nullable=False),
        sa.Column("errors", sa.Integer(), nullable=False),
        sa.Column("archived", sa.Integer(), server_default="0", nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("poll_failures", sa.Integer(), nullable=False),
        sa.Column("resends", sa.Integer(), server_default="0", nullable=False),
        sa.Column("retries", sa.Integer(), nullable=False),
        sa.Column("retry_seconds", sa.Float(), server_default="0", nullable=False),
        sa.Column("lease_until", Timestamp, nullable=True),
        sa.Column("lease_token", sa.String(length=32), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("submitted_at", Timestamp, nullable=True),
        sa.Column("started_at", Timestamp, nullable=True),
        sa.Column("finished_at", Timestamp, nullable=True),
        # Last: SQLite reads through a row's earlier columns to reach a later one, and
        # the progress window reads every column but this one.
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["mcsync_runs.id"],
            name="fk_mcsync_batches_run_id_mcsync_runs",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_mcsync_batches"),
        sa.UniqueConstraint("run_id", "seq", name="uq_mcsync_batch_run_seq"),
    )
    op.create_index(
        "ix_mcsync_batches_run_status_seq", "mcsync_batches", ["run_id", "status", "seq"]
    )
    op.create_index("ix_mcsync_batches_status_lease", "mcsync_batches", ["status", "lease_until"])


def _outcomes() -> None:
    op.create_table(
        "mcsync_outcomes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("batch_id", sa.Integer(), nullable=True),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("email_hash", sa.String(length=32), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("permanent", sa.Boolean(), nullable=False),
        sa.Column("error_title", sa.String(length=200), nullable=True),
        sa.Column("error_detail", sa.Text(), nullable=True),
        sa.Column("mailchimp_status", sa.String(length=16), nullable=True),
        sa.Column("sent", sa.JSON(), nullable=True),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.ForeignKeyConstraint(
            ["batch_id"],
            ["mcsync_batches.id"],
            name="fk_mcsync_outcomes_batch_id_mcsync_batches",
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["mcsync_runs.id"],
            name="fk_mcsync_outcomes_run_id_mcsync_runs",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_mcsync_outcomes"),
    )
    for name, columns in (
        ("ix_mcsync_outcomes_created", ["created_at"]),
        ("ix_mcsync_outcomes_hash_created", ["email_hash", "created_at"]),
        ("ix_mcsync_outcomes_outcome_created", ["outcome", "created_at"]),
        ("ix_mcsync_outcomes_run_outcome", ["run_id", "outcome"]),
    ):
        op.create_index(name, "mcsync_outcomes", columns)


def _outbox() -> None:
    op.create_table(
        "mcsync_outbox",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("action", sa.String(length=16), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("email_hash", sa.String(length=32), nullable=False),
        sa.Column("previous_email", sa.String(length=320), nullable=True),
        sa.Column("merge_fields", sa.JSON(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", Timestamp, nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("run_id", sa.Integer(), nullable=True),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.Column("updated_at", Timestamp, nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["mcsync_runs.id"],
            name="fk_mcsync_outbox_run_id_mcsync_runs",
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_mcsync_outbox"),
    )
    op.create_index("ix_mcsync_outbox_hash_status", "mcsync_outbox", ["email_hash", "status"])
    op.create_index("ix_mcsync_outbox_status_due", "mcsync_outbox", ["status", "next_attempt_at"])


def _webhook_events() -> None:
    op.create_table(
        "mcsync_webhook_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("type", sa.String(length=16), nullable=False),
        sa.Column("fired_at", Timestamp, nullable=True),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("email_hash", sa.String(length=32), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("message", sa.Text(), nullable=True),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=True),
        sa.Column("received_at", Timestamp, nullable=False),
        sa.Column("handled_at", Timestamp, nullable=True),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["mcsync_runs.id"],
            name="fk_mcsync_webhook_events_run_id_mcsync_runs",
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_mcsync_webhook_events"),
        sa.UniqueConstraint("digest", name="uq_mcsync_webhook_events_digest"),
    )
    op.create_index("ix_mcsync_webhook_events_hash", "mcsync_webhook_events", ["email_hash"])
    op.create_index(
        "ix_mcsync_webhook_events_status_received",
        "mcsync_webhook_events",
        ["status", "received_at"],
    )


def _audience_members() -> None:
    op.create_table(
        "mcsync_audience_members",
        sa.Column("email_hash", sa.String(length=32), nullable=False),
        sa.Column("list_id", sa.String(length=64), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("email_lower", sa.String(length=320), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("merge_fields", sa.JSON(), nullable=True),
        sa.Column("contact_id", sa.String(length=64), nullable=True),
        sa.Column("changed_at", Timestamp, nullable=False),
        sa.Column("seen_at", Timestamp, nullable=False),
        sa.PrimaryKeyConstraint("email_hash", name="pk_mcsync_audience_members"),
    )
    op.create_index("ix_mcsync_audience_members_contact", "mcsync_audience_members", ["contact_id"])
    op.create_index(
        "ix_mcsync_audience_members_email_lower", "mcsync_audience_members", ["email_lower"]
    )


def _both_ways() -> None:
    _webhook_events()
    _audience_members()


def upgrade() -> None:
    # Offline (``--sql``) output cannot look at a database: it writes the fresh install.
    bind = op.get_bind()
    version = None if op.get_context().as_sql else legacy_schema.installed_version(bind)
    if version is None:
        for create in (_settings, _exclusion_rules, _runs, _batches, _outcomes, _outbox):
            create()
        _both_ways()
        return
    legacy_schema.bring_to_last_version(bind, version, _both_ways)
    op.drop_table(legacy_schema.VERSION_TABLE)


def downgrade() -> None:
    for table in (
        "mcsync_audience_members",
        "mcsync_webhook_events",
        "mcsync_outbox",
        "mcsync_outcomes",
        "mcsync_batches",
        "mcsync_runs",
        "mcsync_exclusion_rules",
        "mcsync_settings",
    ):
        op.drop_table(table)
