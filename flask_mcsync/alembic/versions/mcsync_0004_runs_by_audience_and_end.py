"""Runs indexed by audience and end, for "did another sync of this audience write since?".

An export's batch asks, before it counts a member Mailchimp says is new as "created",
whether another sync of the audience recorded it since the batch was sent (a signup, the
Diagnostic tool's re-sync, a change from Mailchimp). The answer is "no" for every batch
of an export that nothing else runs beside, and proving it from the runs (none of the
audience's other runs unfinished, none finished since) costs two index reads instead of
a probe per address (benchmarks/README.md, issue 10). Nothing else changes.

Revision ID: mcsync_0004
Revises: mcsync_0003
Create Date: 2026-11-27
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "mcsync_0004"
down_revision: str | Sequence[str] | None = "mcsync_0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEX = "ix_mcsync_runs_list_finished"


def upgrade() -> None:
    existing = {ix["name"] for ix in sa.inspect(op.get_bind()).get_indexes("mcsync_runs")}
    if INDEX not in existing:
        op.create_index(INDEX, "mcsync_runs", ["list_id", "finished_at"])


def downgrade() -> None:
    op.drop_index(INDEX, table_name="mcsync_runs")
