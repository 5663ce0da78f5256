"""Schema versions 1 to 5, from before the mcsync tables moved to Alembic.

Until 0.1.0 the tables were versioned by a hand-written list of steps recorded in
``mcsync_schema``. A database still marked that way is brought to version 5 by the
remaining steps, in place and keeping its rows, by the first Alembic revision
(``flask_mcsync/alembic/versions/mcsync_0001_baseline.py``), which then drops
``mcsync_schema``: from there on Alembic's version table says where the database stands.

The steps are frozen: they write out the DDL of their day and never read
:mod:`flask_mcsync.models`, so a later revision finds the schema it was written for.
"""

from __future__ import annotations

from collections.abc import Callable

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from .errors import SchemaError

VERSION_TABLE = "mcsync_schema"
LAST_VERSION = 5

_schema = sa.table(VERSION_TABLE, sa.column("version", sa.Integer))


def installed_version(conn: Connection) -> int | None:
    """The legacy version of this database, or ``None`` when it never had one."""
    if not sa.inspect(conn).has_table(VERSION_TABLE):
        return None
    return conn.execute(sa.select(sa.func.max(_schema.c.version))).scalar() or 0


def _add_columns(conn: Connection, table: str, columns: dict[str, str]) -> None:
    """``ALTER TABLE ... ADD COLUMN`` for each column not there yet: a database built from
    a newer model than its recorded version may have some already."""
    existing = {c["name"] for c in sa.inspect(conn).get_columns(table)}
    preparer = conn.dialect.identifier_preparer
    for name, ddl in columns.items():
        if name not in existing:
            conn.exec_driver_sql(
                f"ALTER TABLE {preparer.quote(table)} ADD COLUMN {preparer.quote(name)} {ddl}"
            )


def _batch_retry_budget(conn: Connection) -> None:
    _add_columns(
        conn,
        "mcsync_batches",
        {"resends": "INTEGER DEFAULT 0 NOT NULL", "retry_seconds": "FLOAT DEFAULT 0 NOT NULL"},
    )


def _truth_columns(conn: Connection) -> None:
    # "false" is a boolean literal on PostgreSQL and on SQLite (3.23+) alike.
    _add_columns(
        conn,
        "mcsync_runs",
        {
            "sync_reason": "VARCHAR(24)",
            "skip_merge_validation": "BOOLEAN NOT NULL DEFAULT false",
            "archived": "INTEGER NOT NULL DEFAULT 0",
            "confirmations": "INTEGER NOT NULL DEFAULT 0",
        },
    )
    _add_columns(conn, "mcsync_batches", {"archived": "INTEGER NOT NULL DEFAULT 0"})


def _webhook_settings(conn: Connection) -> None:
    _add_columns(
        conn, "mcsync_settings", {"webhook_secret": "VARCHAR(64)", "webhook_id": "VARCHAR(64)"}
    )


def _run_batch_counters(conn: Connection) -> None:
    _add_columns(
        conn,
        "mcsync_runs",
        {
            **{
                name: "INTEGER DEFAULT 0 NOT NULL"
                for name in ("batches_done", "batches_failed", "retries", "most_retries")
            },
            "retry_seconds": "FLOAT DEFAULT 0 NOT NULL",
        },
    )
    # Runs of the previous version: their counters from their batches, once.
    conn.exec_driver_sql(
        "UPDATE mcsync_runs SET"
        " batches_done = (SELECT count(*) FROM mcsync_batches b"
        "   WHERE b.run_id = mcsync_runs.id AND b.status = 'done'),"
        " batches_failed = (SELECT count(*) FROM mcsync_batches b"
        "   WHERE b.run_id = mcsync_runs.id AND b.status = 'failed'),"
        " retries = (SELECT coalesce(sum(b.retries), 0) FROM mcsync_batches b"
        "   WHERE b.run_id = mcsync_runs.id),"
        " most_retries = (SELECT coalesce(max(b.retries), 0) FROM mcsync_batches b"
        "   WHERE b.run_id = mcsync_runs.id),"
        " retry_seconds = (SELECT coalesce(sum(b.retry_seconds), 0) FROM mcsync_batches b"
        "   WHERE b.run_id = mcsync_runs.id)"
    )
    conn.exec_driver_sql(
        "CREATE INDEX IF NOT EXISTS ix_mcsync_batches_run_status_seq"
        " ON mcsync_batches (run_id, status, seq)"
    )


def bring_to_last_version(
    conn: Connection, version: int, create_both_ways_tables: Callable[[], None]
) -> None:
    """Apply the legacy steps after ``version``, in order.

    ``create_both_ways_tables`` creates the webhook events and audience members tables
    (step 4) as the calling revision defines them.

    :raises SchemaError: when ``mcsync_schema`` exists but records no version.
    """
    if version < 1:
        raise SchemaError(
            "mcsync_schema exists but records no version, so the state of the mcsync_*"
            " tables is unknown. Restore the table from a backup, or drop the mcsync_*"
            " tables if they hold nothing you need, then run flask mcsync init-db again."
        )

    def both_ways(conn: Connection) -> None:
        create_both_ways_tables()
        _webhook_settings(conn)

    steps: list[Callable[[Connection], None]] = [
        _batch_retry_budget,  # 2: batches: re-sends and time added by retries
        _truth_columns,  # 3: runs: sync reason, skip_merge_validation, archived, confirmations
        both_ways,  # 4: webhook events, audience members, webhook settings
        _run_batch_counters,  # 5: runs: batch counters for the progress window
    ]
    for number, apply in enumerate(steps, start=2):
        if number > version:
            apply(conn)
