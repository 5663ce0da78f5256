"""Schema migrations for the ``mcsync_*`` tables.

A fresh database gets the current schema in one ``create_all`` and is stamped with the
newest version; an older one gets each missing step of :data:`MIGRATIONS` in order, in
one transaction per step. ``flask mcsync init-db`` runs :func:`upgrade`, and running it
again does nothing. A host that manages its schema with Alembic can instead include
:data:`flask_mcsync.models.metadata` in its ``target_metadata``.

To change the schema: change :mod:`models`, then append a step here that brings a
database of the previous version to the new one (``ALTER TABLE ...``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from .models import (
    AudienceMember,
    PlanChunk,
    PlannedAddress,
    SchemaVersion,
    Settings,
    WebhookEvent,
    metadata,
)


@dataclass(frozen=True)
class Migration:
    version: int
    description: str
    apply: Callable[[Connection], None]


def _initial_schema(conn: Connection) -> None:
    metadata.create_all(conn)


def _add_columns(conn: Connection, table: str, columns: dict[str, str]) -> None:
    """``ALTER TABLE ... ADD COLUMN`` for each column not there yet, so a step can be
    renumbered (or re-run after a partial manual fix) safely."""
    existing = {c["name"] for c in sa.inspect(conn).get_columns(table)}
    preparer = conn.dialect.identifier_preparer
    for name, ddl in columns.items():
        if name not in existing:
            conn.exec_driver_sql(
                f"ALTER TABLE {preparer.quote(table)} ADD COLUMN {preparer.quote(name)} {ddl}"
            )


def _model_type(conn: Connection, table: str, name: str) -> str:
    """The DDL type of a model's column, for a nullable column added as the model has it."""
    return str(metadata.tables[table].c[name].type.compile(dialect=conn.dialect))


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


def _both_ways(conn: Connection) -> None:
    # Webhook events, Mailchimp's view of the audience, and the webhook's secret and id.
    tables = [metadata.tables[m.__tablename__] for m in (WebhookEvent, AudienceMember)]
    metadata.create_all(conn, tables=tables)
    settings = Settings.__tablename__
    _add_columns(
        conn,
        settings,
        {name: _model_type(conn, settings, name) for name in ("webhook_secret", "webhook_id")},
    )


def _run_batch_counters(conn: Connection) -> None:
    # Only what is missing: a database built from a newer model may have some already.
    have = {c["name"] for c in sa.inspect(conn).get_columns("mcsync_runs")}
    for column in ("batches_done", "batches_failed", "retries", "most_retries"):
        if column not in have:
            conn.exec_driver_sql(
                f"ALTER TABLE mcsync_runs ADD COLUMN {column} INTEGER DEFAULT 0 NOT NULL"
            )
    if "retry_seconds" not in have:
        conn.exec_driver_sql(
            "ALTER TABLE mcsync_runs ADD COLUMN retry_seconds FLOAT DEFAULT 0 NOT NULL"
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


def _plan_chunks(conn: Connection) -> None:
    # New tables only: a run planned by the one-job planner resumes as one chunk.
    tables = [metadata.tables[m.__tablename__] for m in (PlanChunk, PlannedAddress)]
    metadata.create_all(conn, tables=tables)


MIGRATIONS: list[Migration] = [
    Migration(1, "initial schema", _initial_schema),
    Migration(2, "batches: re-sends and time added by retries", _batch_retry_budget),
    Migration(
        3,
        "runs: sync reason, skip_merge_validation, archived and confirmation counts",
        _truth_columns,
    ),
    Migration(4, "both ways: webhook events, audience members, webhook settings", _both_ways),
    Migration(5, "runs: batch counters for the progress window", _run_batch_counters),
    Migration(6, "planning in chunks: key ranges and planned addresses", _plan_chunks),
]

HEAD = MIGRATIONS[-1].version


def current_version(conn: Connection) -> int | None:
    """The applied version, or ``None`` when the mcsync tables do not exist yet."""
    if not sa.inspect(conn).has_table(SchemaVersion.__tablename__):
        return None
    return conn.execute(sa.select(sa.func.max(SchemaVersion.version))).scalar() or 0


def upgrade(engine: Engine) -> list[str]:
    """Bring the mcsync tables to the newest schema. Returns what was done, one line each."""
    done: list[str] = []
    with engine.begin() as conn:
        version = current_version(conn)
        if version is None:
            metadata.create_all(conn)
            conn.execute(
                sa.insert(SchemaVersion),
                [{"version": m.version, "description": m.description} for m in MIGRATIONS],
            )
            return [f"created the mcsync tables (schema version {HEAD})"]
    for migration in MIGRATIONS:
        if migration.version <= version:
            continue
        with engine.begin() as conn:
            migration.apply(conn)
            conn.execute(
                sa.insert(SchemaVersion).values(
                    version=migration.version, description=migration.description
                )
            )
        done.append(f"applied migration {migration.version}: {migration.description}")
    return done
