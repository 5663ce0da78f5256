"""The two tables an export writes a row per address to lose their foreign keys.

``mcsync_outcomes`` (``run_id``, ``batch_id``) and ``mcsync_planned_addresses``
(``run_id``) are written a row per address of every export. On PostgreSQL each of those
rows ran a foreign-key trigger per key (a lookup and a share lock on the run's row, which
every worker's transaction of the run takes at once): 100,000 outcome rows cost the
server 2.2 to 2.6 s of CPU with the keys and 1.1 to 1.2 s without (benchmarks/README.md,
issue 10). The keys guarded nothing our code does: runs and batches are never deleted,
and every row is written with the run and batch its job holds. Nothing else changes.

On SQLite a table cannot lose a constraint in place: Alembic's batch mode copies it into
a new table, rows and indexes included, once. The keys are found by their columns, not
their names: tables made before Alembic (``legacy_schema``) have PostgreSQL's own names
for them (``mcsync_outcomes_run_id_fkey``), and none on SQLite.

Revision ID: mcsync_0003
Revises: mcsync_0002
Create Date: 2026-11-26
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "mcsync_0003"
down_revision: str | Sequence[str] | None = "mcsync_0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

DROPPED = {
    "mcsync_outcomes": [
        ("fk_mcsync_outcomes_run_id_mcsync_runs", ["run_id"], "mcsync_runs", "CASCADE"),
        ("fk_mcsync_outcomes_batch_id_mcsync_batches", ["batch_id"], "mcsync_batches", "SET NULL"),
    ],
    "mcsync_planned_addresses": [
        ("fk_mcsync_planned_addresses_run_id_mcsync_runs", ["run_id"], "mcsync_runs", "CASCADE"),
    ],
}


# Names for the keys SQLite reflects without one, so batch mode can drop them.
NAMES = {"fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s"}


def upgrade() -> None:
    inspector = sa.inspect(op.get_bind())
    for table, keys in DROPPED.items():
        ours = {(tuple(columns), target): name for name, columns, target, _ in keys}
        found = [
            fk["name"] or ours[key]
            for fk in inspector.get_foreign_keys(table)
            if (key := (tuple(fk["constrained_columns"]), fk["referred_table"])) in ours
        ]
        if not found:
            continue
        with op.batch_alter_table(table, naming_convention=NAMES) as batch:
            for name in found:
                batch.drop_constraint(name, type_="foreignkey")


def downgrade() -> None:
    for table, keys in DROPPED.items():
        with op.batch_alter_table(table) as batch:
            for name, columns, target, ondelete in keys:
                batch.create_foreign_key(name, target, columns, ["id"], ondelete=ondelete)
