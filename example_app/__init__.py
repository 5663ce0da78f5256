"""A small shop that uses flask-mcsync: customers, a signup page, an admin login.

Configured from the environment so the same code runs the demo, the tests and a
developer's shell:

* ``DATABASE_URL`` (default: SQLite in the instance folder),
* ``MCSYNC_API_KEY``, ``MCSYNC_API_URL``, ``MCSYNC_REDIS_URL`` and any other ``MCSYNC_*``,
* ``SHOP_ADMIN_PASSWORD`` (default ``admin``), ``SECRET_KEY`` (no default: without
  one the shop and the CLI work but nobody can log in; the demo makes one per run).
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from typing import Any

import sqlalchemy as sa
from flask import Flask, session

from flask_mcsync import MailchimpSync, SubscriberSource

from .mailchimp_changes import apply_mailchimp_change
from .models import Customer, db

mcsync = MailchimpSync(
    db=db,
    source=SubscriberSource(
        model=Customer,
        email="email",
        # Only newsletter opt-ins are subscribers: the others never reach Mailchimp.
        filter=lambda: Customer.newsletter.is_(True),
        # VIP is a boolean column: sent as the audience's VIP field type wants ("Yes"/"No"
        # for text, 1/0 for number); an audience without a VIP field ignores it.
        merge_fields={"FNAME": "first_name", "LNAME": "last_name", "VIP": "vip"},
        language="language",
        # Unsubscribes, bounces and address changes made in Mailchimp come back here.
        on_mailchimp_change=apply_mailchimp_change,
    ),
    # The admin pages are for a logged-in shop admin only.
    authorize=lambda: bool(session.get("shop_admin")),
)


def create_app(test_config: dict[str, Any] | None = None) -> Flask:
    app = Flask(__name__, instance_relative_config=True)
    os.makedirs(app.instance_path, exist_ok=True)
    app.config.update(
        # No default: a key written here would be in every copy of this code, and anyone
        # could sign an admin session with it.
        SECRET_KEY=os.environ.get("SECRET_KEY") or None,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_HTTPONLY=True,
        SQLALCHEMY_DATABASE_URI=os.environ.get(
            "DATABASE_URL", f"sqlite:///{os.path.join(app.instance_path, 'shop.db')}"
        ),
        SHOP_ADMIN_PASSWORD=os.environ.get("SHOP_ADMIN_PASSWORD", "admin"),
        # SQLite in WAL mode (see sqlite_for_workers); SHOP_SQLITE_WAL=0 keeps SQLite's
        # own journal, as a host that never chose one has it.
        SHOP_SQLITE_WAL=os.environ.get("SHOP_SQLITE_WAL", "1").lower() not in ("0", "false", "no"),
    )
    app.config.update({k: v for k, v in os.environ.items() if k.startswith("MCSYNC_")})
    if test_config:
        app.config.update(test_config)

    db.init_app(app)
    mcsync.init_app(app)
    if app.config["SQLALCHEMY_DATABASE_URI"].startswith("sqlite") and app.config["SHOP_SQLITE_WAL"]:
        with app.app_context():
            sa.event.listen(db.engine, "connect", sqlite_for_workers)

    from . import commands, security, views

    app.register_blueprint(views.bp)
    app.after_request(security.frame_headers)
    app.context_processor(lambda: {"shop_csrf_token": security.csrf_token})
    app.cli.add_command(commands.seed)
    with app.app_context():
        db.create_all()
        _add_language_column()
        from flask_mcsync.migrations import upgrade

        upgrade(db.engine)
    return app


# Pages written to the WAL before it is copied back into the database (SQLite: 1,000).
WAL_AUTOCHECKPOINT_PAGES = 40_000


def sqlite_for_workers(connection: Any, _record: Any) -> None:
    """SQLite as docs/operations.rst recommends for a shop with mcsync workers.

    With WAL the shop and the progress window read while a worker commits (with the
    default journal a read waits for each commit, and fails as "database is locked"
    after 5 s), and ``synchronous=NORMAL`` spares an fsync per commit: an export's rate
    against the benchmark's ceiling rose 11-12 % at 100,000 addresses (benchmarks/README.md).
    NORMAL can lose the last commits on a power cut, not on a crash of a process.
    ``wal_autocheckpoint=40000`` copies the WAL back into the database every 40,000 pages
    instead of every 1,000: an export batch dirties about a page per address in the
    indexes keyed by address (the outcome rows' and the planned addresses', whose keys
    are random), so SQLite's default checkpointed after nearly every batch; at 1,000,000
    addresses the rate against the benchmark's ceiling went from 0.72-0.75 to 0.78-0.81
    (benchmarks/README.md), by waiting less for fsyncs. The WAL file grows to at least
    160 MB with 4 KB pages (more while a long read holds a checkpoint back) and keeps
    that size while a connection is open. An in-memory database ignores all three.
    """
    cursor = connection.cursor()
    # Leaving the default journal takes the file to itself, once: while another
    # connection is reading or writing (a web process not yet restarted, say), this one
    # stays on the default journal after the busy timeout, and a later one switches.
    with contextlib.suppress(sqlite3.OperationalError):
        cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute(f"PRAGMA wal_autocheckpoint={WAL_AUTOCHECKPOINT_PAGES}")
    cursor.close()


def _add_language_column() -> None:
    """A shop database made before customers had a language gets the column (NULL: none)."""
    columns = {c["name"] for c in sa.inspect(db.engine).get_columns("shop_customers")}
    if "language" not in columns:
        with db.engine.begin() as connection:
            connection.execute(
                sa.text("ALTER TABLE shop_customers ADD COLUMN language VARCHAR(16)")
            )
