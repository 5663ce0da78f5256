"""Fixtures: every database test runs on SQLite and on PostgreSQL, against a real Redis
and the Mailchimp sandbox (served by the ``mailchimp_sandbox`` fixture of our pytest
plugin), with real RQ worker processes where a test needs them.

PostgreSQL and Redis come from ``MCSYNC_TEST_DATABASE_URL`` and ``MCSYNC_TEST_REDIS_URL``
(``.ci/run`` always sets both); a test that needs one that is not configured skips and
says which variable to set.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient
from redis import Redis
from support import ADMIN_CSRF_TOKEN, Workers, app_config

from flask_mcsync.sandbox import SandboxServer

PG_URL = os.environ.get("MCSYNC_TEST_DATABASE_URL")
REDIS_URL = os.environ.get("MCSYNC_TEST_REDIS_URL")


def _reset_postgres(url: str) -> None:
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP SCHEMA IF EXISTS public CASCADE")
        conn.exec_driver_sql("CREATE SCHEMA public")
    engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty database: SQLite in a file, then PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'shop.db'}"
    if not PG_URL:
        pytest.skip("PostgreSQL is not configured: set MCSYNC_TEST_DATABASE_URL")
    _reset_postgres(PG_URL)
    return PG_URL


@pytest.fixture
def redis_url() -> Iterator[str]:
    """A real Redis, flushed before and after the test."""
    if not REDIS_URL:
        pytest.skip("Redis is not configured: set MCSYNC_TEST_REDIS_URL")
    connection = Redis.from_url(REDIS_URL)
    connection.flushdb()
    yield REDIS_URL
    connection.flushdb()
    connection.close()


@pytest.fixture
def sandbox(mailchimp_sandbox: SandboxServer) -> SandboxServer:
    return mailchimp_sandbox


@pytest.fixture
def app(database_url: str, redis_url: str, sandbox: SandboxServer) -> Iterator[Flask]:
    """The example shop on a fresh database, wired to Redis and the sandbox."""
    from example_app import create_app

    application = create_app(app_config(database_url, redis_url, sandbox))
    with application.app_context():
        yield application
        from example_app.models import db

        db.session.remove()
        db.engine.dispose()


@pytest.fixture
def db_only_app(database_url: str, sandbox: SandboxServer) -> Iterator[Flask]:
    """The example shop without Redis, for tests of storage and rules only."""
    from example_app import create_app

    application = create_app(app_config(database_url, None, sandbox))
    with application.app_context():
        yield application
        from example_app.models import db

        db.session.remove()
        db.engine.dispose()


@pytest.fixture
def workers(app: Flask, sandbox: SandboxServer) -> Iterator[Workers]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MCSYNC_")}
    env.update(
        {
            "DATABASE_URL": app.config["SQLALCHEMY_DATABASE_URI"],
            "SECRET_KEY": "test",
            **{k: str(v) for k, v in app.config.items() if k.startswith("MCSYNC_") and v},
        }
    )
    pool = Workers(env)
    yield pool
    pool.stop_all()


@pytest.fixture
def bare_app(database_url: str, sandbox: SandboxServer) -> Iterator[Flask]:
    """A host app that registers the extension without an authorize callable."""
    from example_app.models import Customer, db
    from flask_mcsync import MailchimpSync, SubscriberSource

    app = Flask("bare_host")
    app.config.update(
        SECRET_KEY="test",
        SQLALCHEMY_DATABASE_URI=database_url,
        MCSYNC_API_KEY=sandbox.api_key,
        MCSYNC_API_URL=sandbox.api_url,
    )
    db.init_app(app)
    MailchimpSync(app, db=db, source=SubscriberSource(model=Customer, email="email"))
    with app.app_context():
        yield app
        db.session.remove()
        db.engine.dispose()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    """A logged-in shop admin holding a known CSRF token (ADMIN_CSRF_TOKEN)."""
    from flask_mcsync.admin.security import SESSION_KEY

    test_client = app.test_client()
    with test_client.session_transaction() as sess:
        sess["shop_admin"] = True
        sess[SESSION_KEY] = ADMIN_CSRF_TOKEN
    return test_client
