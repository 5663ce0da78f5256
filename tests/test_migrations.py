"""The mcsync tables' migrations: a fresh install, an upgrade of a database made before
Alembic with rows in it, the models and the revisions agreeing, and a host on
Flask-Migrate, on SQLite and PostgreSQL."""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import flask_migrate
import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from flask import Flask
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from support import app_config

from flask_mcsync import MailchimpSync, SubscriberSource
from flask_mcsync.host_migrations import add_revisions
from flask_mcsync.migrations import (
    BRANCH,
    VERSION_TABLE,
    SchemaError,
    compare_type,
    current_revision,
    head_revision,
    only_mcsync_tables,
    upgrade,
)
from flask_mcsync.models import metadata
from flask_mcsync.sandbox import SandboxServer

OUR_TABLES = set(metadata.tables)


@pytest.fixture
def engine(database_url: str) -> Iterator[sa.Engine]:
    made = sa.create_engine(database_url)
    yield made
    made.dispose()


def differences(engine: sa.Engine) -> list[Any]:
    """What Alembic's autogenerate would write to bring the database to the models."""
    with engine.connect() as conn:
        context = MigrationContext.configure(
            conn,
            opts={
                "compare_type": compare_type,
                "version_table": VERSION_TABLE,
                "include_name": only_mcsync_tables,
            },
        )
        return list(compare_metadata(context, metadata))


def test_a_fresh_database_gets_every_table_at_the_newest_revision(engine: sa.Engine) -> None:
    assert upgrade(engine)[0] == "created the mcsync tables"

    assert set(sa.inspect(engine).get_table_names()) == OUR_TABLES | {VERSION_TABLE}
    with engine.connect() as conn:
        assert current_revision(conn) == head_revision()
    assert differences(engine) == []


def test_upgrading_again_does_nothing(engine: sa.Engine) -> None:
    upgrade(engine)
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "INSERT INTO mcsync_exclusion_rules (kind, value, created_at)"
            " VALUES ('domain', 'example.org', CURRENT_TIMESTAMP)"
        )

    assert upgrade(engine) == []
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT value FROM mcsync_exclusion_rules").scalar() == (
            "example.org"
        )


def test_a_model_change_without_its_revision_is_caught(engine: sa.Engine) -> None:
    upgrade(engine)
    with engine.begin() as conn:
        conn.exec_driver_sql("ALTER TABLE mcsync_outbox DROP COLUMN last_error")

    assert [diff[0] for diff in differences(engine)] == ["add_column"]


def test_init_db_says_when_a_newer_version_migrated_the_tables(engine: sa.Engine) -> None:
    upgrade(engine)
    with engine.begin() as conn:
        conn.exec_driver_sql(f"UPDATE {VERSION_TABLE} SET version_num = 'mcsync_9999'")

    with pytest.raises(SchemaError, match="revision mcsync_9999, which this version"):
        upgrade(engine)


# What each schema version of the hand-written migrations (before Alembic) added.
ADDED_BY_VERSION: dict[int, dict[str, list[str]]] = {
    2: {"mcsync_batches": ["resends", "retry_seconds"]},
    3: {
        "mcsync_runs": ["sync_reason", "skip_merge_validation", "archived", "confirmations"],
        "mcsync_batches": ["archived"],
    },
    4: {"mcsync_settings": ["webhook_secret", "webhook_id"]},
    5: {
        "mcsync_runs": [
            "batches_done",
            "batches_failed",
            "retries",
            "most_retries",
            "retry_seconds",
        ]
    },
}
BOTH_WAYS_TABLES = ["mcsync_webhook_events", "mcsync_audience_members"]  # version 4


LATER_REVISION_TABLES = ("mcsync_planned_addresses", "mcsync_plan_chunks")


def make_legacy_database(engine: sa.Engine, version: int) -> None:
    """The schema ``flask mcsync init-db`` made before Alembic, at ``version``, with rows
    in every table."""
    upgrade(engine)
    with engine.begin() as conn:
        conn.exec_driver_sql(f"DROP TABLE {VERSION_TABLE}")
        for table in LATER_REVISION_TABLES:  # made by revisions after mcsync_0001
            conn.exec_driver_sql(f"DROP TABLE {table}")
        for later in range(version + 1, 6):
            for table, columns in ADDED_BY_VERSION[later].items():
                for column in columns:
                    conn.exec_driver_sql(f"ALTER TABLE {table} DROP COLUMN {column}")
        if version < 4:
            for table in BOTH_WAYS_TABLES:
                conn.exec_driver_sql(f"DROP TABLE {table}")
        if version < 5:
            conn.exec_driver_sql("DROP INDEX ix_mcsync_batches_run_status_seq")
        conn.exec_driver_sql(
            "CREATE TABLE mcsync_schema (version INTEGER PRIMARY KEY,"
            " description VARCHAR(200) NOT NULL, applied_at TIMESTAMP NOT NULL)"
        )
        for number in range(1, version + 1):
            conn.exec_driver_sql(
                f"INSERT INTO mcsync_schema VALUES ({number}, 'step {number}', CURRENT_TIMESTAMP)"
            )
        insert_rows(conn, version)


def insert_rows(conn: sa.Connection, version: int) -> None:
    now = "CURRENT_TIMESTAMP"
    conn.execute(
        sa.text(
            "INSERT INTO mcsync_settings (id, list_id, double_optin, batch_size, auto_sync,"
            f" updated_at) VALUES (1, 'a1b2c3d4e5', :f, 250, :t, {now})"
        ),
        {"f": False, "t": True},
    )
    conn.exec_driver_sql(
        "INSERT INTO mcsync_exclusion_rules (kind, value, created_at)"
        f" VALUES ('domain', 'example.org', {now})"
    )
    conn.execute(
        sa.text(
            "INSERT INTO mcsync_runs (id, kind, list_id, status, started_by, batch_size,"
            " status_if_new, planning_done, batch_count, total, excluded, invalid,"
            " duplicates, created, updated, skipped, errors, created_at) VALUES"
            " (7, 'export', 'a1b2c3d4e5', 'finished', 'old', 2, 'subscribed', :t, 2, 3, 0,"
            f" 0, 0, 2, 1, 0, 0, {now})"
        ),
        {"t": True},
    )
    for seq, status in ((1, "done"), (2, "failed")):
        conn.exec_driver_sql(
            "INSERT INTO mcsync_batches (id, run_id, seq, status, size, first_address,"
            " last_address, payload, total_operations, finished_operations, created,"
            " updated, errors, attempts, poll_failures, retries) VALUES"
            f" ({seq}, 7, {seq}, '{status}', 2, 'a@example.com', 'b@example.com', '[]',"
            f" 2, 2, 1, 1, 0, 0, 0, {seq})"
        )
    conn.execute(
        sa.text(
            "INSERT INTO mcsync_outcomes (run_id, batch_id, email, email_hash, outcome,"
            f" permanent, created_at) VALUES (7, 1, 'a@example.com', 'h1', 'created', :f,"
            f" {now})"
        ),
        {"f": False},
    )
    conn.exec_driver_sql(
        "INSERT INTO mcsync_outbox (action, email, email_hash, status, attempts,"
        " next_attempt_at, created_at, updated_at) VALUES ('upsert', 'c@example.com',"
        f" 'h3', 'pending', 0, {now}, {now}, {now})"
    )
    if version >= 4:
        conn.exec_driver_sql(
            "INSERT INTO mcsync_webhook_events (digest, type, email, email_hash, status,"
            " payload, received_at) VALUES ('d1', 'unsubscribe', 'a@example.com', 'h1',"
            f" 'applied', '{{}}', {now})"
        )
        conn.exec_driver_sql(
            "INSERT INTO mcsync_audience_members (email_hash, list_id, email, email_lower,"
            " status, changed_at, seen_at) VALUES ('h1', 'a1b2c3d4e5', 'A@example.com',"
            f" 'a@example.com', 'unsubscribed', {now}, {now})"
        )


@pytest.mark.parametrize("version", [1, 3, 4, 5])
def test_a_database_made_before_alembic_keeps_its_rows_and_reaches_head(
    engine: sa.Engine, version: int
) -> None:
    make_legacy_database(engine, version)

    done = upgrade(engine)

    assert done[0].startswith(f"brought the mcsync tables from schema version {version} to 5")
    assert set(sa.inspect(engine).get_table_names()) == OUR_TABLES | {VERSION_TABLE}
    with engine.connect() as conn:
        assert current_revision(conn) == head_revision()
        one = conn.exec_driver_sql
        assert one("SELECT list_id, batch_size FROM mcsync_settings").one() == ("a1b2c3d4e5", 250)
        assert one("SELECT value FROM mcsync_exclusion_rules").scalar() == "example.org"
        # Schema version 5 counts a run's batches on the run: those of an older run are
        # counted from its batches once (a run of version 5 has its own, zero here).
        counters = (1, 1, 3, 2) if version < 5 else (0, 0, 0, 0)
        assert one(
            "SELECT total, created, batches_done, batches_failed, retries, most_retries,"
            " archived FROM mcsync_runs WHERE id = 7"
        ).one() == (3, 2, *counters, 0)
        assert one("SELECT seq, status FROM mcsync_batches ORDER BY seq").all() == [
            (1, "done"),
            (2, "failed"),
        ]
        assert one("SELECT email, batch_id FROM mcsync_outcomes").one() == ("a@example.com", 1)
        assert one("SELECT email FROM mcsync_outbox").scalar() == "c@example.com"
        events = one("SELECT count(*) FROM mcsync_webhook_events").scalar()
        members = one("SELECT count(*) FROM mcsync_audience_members").scalar()
    assert (events, members) == ((1, 1) if version >= 4 else (0, 0))
    assert differences(engine) == []
    assert upgrade(engine) == []


# Not a copy of today's schema with columns dropped, as above: what the release before
# Alembic wrote on SQLite (its init-db, then an export of 45 addresses), as sqlite3 dumped it.
PRE_ALEMBIC_SQLITE = Path(__file__).parent / "data" / "pre_alembic_sqlite.sql"


def test_tables_the_release_before_alembic_made_on_sqlite_upgrade_with_their_rows(
    tmp_path: Path,
) -> None:
    path = tmp_path / "shop.db"
    with sqlite3.connect(path) as made:
        made.executescript(PRE_ALEMBIC_SQLITE.read_text())
    engine = sa.create_engine(f"sqlite:///{path}")
    try:
        done = upgrade(engine)

        assert done[0].startswith("brought the mcsync tables from schema version 5 to 5")
        with engine.connect() as conn:
            assert current_revision(conn) == head_revision()
            one = conn.exec_driver_sql
            assert one("SELECT count(*), sum(created) FROM mcsync_runs").one() == (3, 45)
            assert one("SELECT count(DISTINCT email) FROM mcsync_outcomes").scalar() == 45
            assert one("SELECT list_id FROM mcsync_settings").scalar() == "a1b2c3d4e5"
            assert one("SELECT kind, value FROM mcsync_exclusion_rules").one() == (
                "domain",
                "example.org",
            )
            declared = {
                c["name"]: str(c["type"]) for c in sa.inspect(conn).get_columns("mcsync_runs")
            }
        # Kept as it was declared (the same REAL storage), and not reported as a change.
        assert declared["retry_seconds"] == "DOUBLE"
        assert differences(engine) == []
    finally:
        engine.dispose()


def test_our_type_comparison_lets_only_a_float_pair_pass_on_sqlite_only() -> None:
    def context(dialect: str) -> Any:
        return type("Context", (), {"dialect": type("Dialect", (), {"name": dialect})()})()

    assert compare_type(context("sqlite"), None, None, sa.DOUBLE(), sa.Float()) is False
    # Anything else is left to Alembic (None), so a real type change is still reported.
    assert compare_type(context("sqlite"), None, None, sa.Integer(), sa.String()) is None
    assert compare_type(context("sqlite"), None, None, sa.Float(), sa.Integer()) is None
    assert compare_type(context("postgresql"), None, None, sa.DOUBLE(), sa.Float()) is None


def test_init_db_leaves_tables_another_tool_created_alone(engine: sa.Engine) -> None:
    upgrade(engine)
    with engine.begin() as conn:
        conn.exec_driver_sql(f"DROP TABLE {VERSION_TABLE}")

    with pytest.raises(SchemaError, match="flask db upgrade heads"):
        upgrade(engine)
    assert set(sa.inspect(engine).get_table_names()) >= OUR_TABLES


# --- a host on Flask-Migrate -------------------------------------------------------------


class HostBase(DeclarativeBase):
    pass


host_db = SQLAlchemy(model_class=HostBase)


class HostCustomer(host_db.Model):  # type: ignore[name-defined,misc]
    __tablename__ = "host_customers"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(sa.String(320))


# Flask-Migrate's env.py tries Flask-SQLAlchemy 2's get_engine() first.
FLASK_MIGRATE_TEMPLATE = "ignore:'get_engine' is deprecated:DeprecationWarning"


@pytest.fixture
def logging_kept() -> Iterator[None]:
    """Flask-Migrate's env.py applies its alembic.ini's logging setup, which disables the
    loggers that exist: put them back for the tests that follow."""
    loggers = dict(logging.root.manager.loggerDict)
    disabled = {name: getattr(lg, "disabled", False) for name, lg in loggers.items()}
    root_level, root_handlers = logging.root.level, list(logging.root.handlers)
    yield
    for name, was in disabled.items():
        if isinstance(loggers[name], logging.Logger):
            loggers[name].disabled = was
    logging.root.setLevel(root_level)
    logging.root.handlers[:] = root_handlers


def host_app(
    database_url: str, sandbox: SandboxServer, migrate_first: bool, with_revisions: bool
) -> tuple[Flask, flask_migrate.Migrate]:
    app = Flask("migrate_host")
    app.config.update(app_config(database_url, None, sandbox))
    host_db.init_app(app)
    migrate = flask_migrate.Migrate()
    if with_revisions:
        add_revisions(migrate)
    source = SubscriberSource(model=HostCustomer)
    if migrate_first:
        migrate.init_app(app, host_db)
        MailchimpSync(app, db=host_db, source=source)
    else:
        MailchimpSync(app, db=host_db, source=source)
        migrate.init_app(app, host_db)
    return app, migrate


def written_revisions(directory: Path) -> list[str]:
    return [path.read_text() for path in sorted((directory / "versions").glob("*.py"))]


@pytest.mark.usefixtures("logging_kept")
@pytest.mark.filterwarnings(FLASK_MIGRATE_TEMPLATE)
@pytest.mark.parametrize("migrate_first", [True, False], ids=["migrate-first", "mcsync-first"])
def test_the_hosts_autogenerate_proposes_nothing_about_our_tables(
    database_url: str, sandbox: SandboxServer, tmp_path: Path, migrate_first: bool
) -> None:
    app, _ = host_app(database_url, sandbox, migrate_first, with_revisions=False)
    directory = tmp_path / "migrations"
    with app.app_context():
        runner = app.test_cli_runner()
        assert "created the mcsync tables" in runner.invoke(args=["mcsync", "init-db"]).output
        assert runner.invoke(args=["mcsync", "init-db"]).output == (
            "The mcsync tables are up to date.\n"
        )
        flask_migrate.init(str(directory))
        flask_migrate.migrate(str(directory), message="host tables")
        [script] = written_revisions(directory)
        assert "op.create_table('host_customers'" in script
        assert "mcsync" not in script

        flask_migrate.upgrade(str(directory))
        flask_migrate.migrate(str(directory), message="nothing")
        assert len(written_revisions(directory)) == 1  # nothing to do: no empty revision
        host_db.engine.dispose()


@pytest.mark.usefixtures("logging_kept")
@pytest.mark.filterwarnings(FLASK_MIGRATE_TEMPLATE)
def test_the_hosts_flask_db_upgrade_runs_our_revisions(
    database_url: str, sandbox: SandboxServer, tmp_path: Path
) -> None:
    app, _ = host_app(database_url, sandbox, migrate_first=True, with_revisions=True)
    directory = tmp_path / "migrations"
    with app.app_context():
        engine = host_db.engine
        flask_migrate.init(str(directory))
        flask_migrate.upgrade(str(directory), revision="heads")  # ours only, so far
        assert set(sa.inspect(engine).get_table_names()) >= OUR_TABLES

        flask_migrate.migrate(str(directory), message="host tables")
        [script] = written_revisions(directory)  # in the host's folder, a base of its own
        assert "down_revision = None" in script
        assert "op.create_table('host_customers'" in script
        assert "mcsync" not in script
        flask_migrate.upgrade(str(directory), revision="heads")

        tables = set(sa.inspect(engine).get_table_names())
        assert OUR_TABLES | {"host_customers", "alembic_version"} <= tables
        assert VERSION_TABLE not in tables
        with engine.connect() as conn:
            recorded = set(
                conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalars()
            )
        assert head_revision() in recorded and len(recorded) == 2
        assert differences(engine) == []
        # flask mcsync init-db: the host's Flask-Migrate owns them now.
        refused = app.test_cli_runner().invoke(args=["mcsync", "init-db"])
        assert refused.exit_code == 1
        assert "instead of flask mcsync init-db" in refused.output
        engine.dispose()


@pytest.mark.usefixtures("logging_kept")
@pytest.mark.filterwarnings(FLASK_MIGRATE_TEMPLATE)
def test_a_bare_flask_db_upgrade_says_to_name_heads_and_changes_nothing(
    database_url: str, sandbox: SandboxServer, tmp_path: Path
) -> None:
    """The host's history and ours are two branches: Alembic refuses the default target
    ``head`` and its error names ``heads`` (docs/integration.rst says to deploy with it)."""
    app, _ = host_app(database_url, sandbox, migrate_first=True, with_revisions=True)
    directory = tmp_path / "migrations"
    with app.app_context():
        engine = host_db.engine
        flask_migrate.init(str(directory))
        flask_migrate.upgrade(str(directory), revision="heads")
        flask_migrate.migrate(str(directory), message="host tables")
        before = set(sa.inspect(engine).get_table_names())

        runner = app.test_cli_runner()
        bare = runner.invoke(args=["db", "upgrade", "--directory", str(directory)])
        assert bare.exit_code == 1, bare.output
        assert "Multiple head revisions" in bare.output, bare.output
        assert "'heads' for all heads" in bare.output, bare.output
        assert set(sa.inspect(engine).get_table_names()) == before  # nothing ran

        named = runner.invoke(args=["db", "upgrade", "--directory", str(directory), "heads"])
        assert named.exit_code == 0, named.output
        assert "host_customers" in sa.inspect(engine).get_table_names()
        engine.dispose()


@pytest.mark.usefixtures("logging_kept")
@pytest.mark.filterwarnings(FLASK_MIGRATE_TEMPLATE)
def test_tables_init_db_made_move_to_the_hosts_flask_db_upgrade(
    database_url: str, sandbox: SandboxServer, tmp_path: Path
) -> None:
    app, _ = host_app(database_url, sandbox, migrate_first=False, with_revisions=True)
    directory = tmp_path / "migrations"
    with app.app_context():
        engine = host_db.engine
        upgrade(engine)  # what flask mcsync init-db did so far
        with engine.begin() as conn:
            conn.exec_driver_sql(
                "INSERT INTO mcsync_settings (id, double_optin, batch_size,"
                " auto_sync, updated_at) VALUES (1, false, 9, true,"
                " CURRENT_TIMESTAMP)"
            )
        # The steps docs/integration.rst gives:
        flask_migrate.init(str(directory))
        flask_migrate.stamp(str(directory), revision=f"{BRANCH}@head")
        with engine.begin() as conn:
            conn.exec_driver_sql(f"DROP TABLE {VERSION_TABLE}")
        flask_migrate.migrate(str(directory), message="host tables")
        flask_migrate.upgrade(str(directory), revision="heads")

        with engine.connect() as conn:
            recorded = conn.exec_driver_sql("SELECT version_num FROM alembic_version")
            assert head_revision() in set(recorded.scalars())
            assert conn.exec_driver_sql("SELECT batch_size FROM mcsync_settings").scalar() == 9
        assert "host_customers" in sa.inspect(engine).get_table_names()
        engine.dispose()
