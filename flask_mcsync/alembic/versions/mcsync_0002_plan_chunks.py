"""Planning in chunks: a run's key ranges, and the addresses its planning has placed.

Two new tables, nothing else changes: a run planned by the one-job planner of an older
version resumes as one chunk (the planner cuts a run without chunks when it next runs).

Revision ID: mcsync_0002
Revises: mcsync_0001
Create Date: 2026-11-25
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "mcsync_0002"
down_revision: str | Sequence[str] | None = "mcsync_0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

Timestamp = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "mcsync_plan_chunks",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("after", sa.String(length=64), nullable=True),
        sa.Column("through", sa.String(length=64), nullable=True),
        sa.Column("planned_through", sa.String(length=64), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("lease_until", Timestamp, nullable=True),
        sa.Column("lease_token", sa.String(length=32), nullable=True),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["mcsync_runs.id"],
            name="fk_mcsync_plan_chunks_run_id_mcsync_runs",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_mcsync_plan_chunks"),
        sa.UniqueConstraint("run_id", "seq", name="uq_mcsync_plan_chunk_run_seq"),
    )
    op.create_table(
        "mcsync_planned_addresses",
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("key", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["mcsync_runs.id"],
            name="fk_mcsync_planned_addresses_run_id_mcsync_runs",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("run_id", "key", name="pk_mcsync_planned_addresses"),
    )


def downgrade() -> None:
    op.drop_table("mcsync_planned_addresses")
    op.drop_table("mcsync_plan_chunks")
