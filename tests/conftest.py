"""Fixtures: every database test runs on SQLite and on PostgreSQL, against a real Redis
and the Mailchimp sandbox (served by the ``mailchimp_sandbox`` fixture of our pytest
plugin), with real RQ worker processes where a test needs them.

PostgreSQL and Redis come from ``MCSYNC_TEST_DATABASE_URL`` and ``MCSYNC_TEST_REDIS_URL``
(``.ci/run`` always sets both); a test that needs one that is not configured skips and
says which variable to set.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask
from redis import Redis

from flask_mcsync.sandbox import SandboxServer

PG_URL = os.environ.get("MCSYNC_TEST_DATABASE_URL")
REDIS_URL = os.environ.get("MCSYNC_TEST_REDIS_URL")
ROOT = Path(__file__).resolve().parent.parent

# Fast timings so crash-and-resume tests take seconds, not minutes.
FAST = {
    "MCSYNC_LEASE_SECONDS": 4,
    "MCSYNC_POLL_INTERVAL": 0.3,
    "MCSYNC_SWEEP_INTERVAL": 2,
    "MCSYNC_REQUEST_TIMEOUT": 3,
}


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


def app_config(database_url: str, redis_url: str | None, sandbox: SandboxServer) -> dict[str, Any]:
    return {
        "TESTING": True,
        "SECRET_KEY": "test",
        "SQLALCHEMY_DATABASE_URI": database_url,
        "MCSYNC_API_KEY": sandbox.api_key,
        "MCSYNC_API_URL": sandbox.api_url,
        "MCSYNC_REDIS_URL": redis_url,
        **FAST,
    }


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


class Workers:
    """Real ``flask mcsync worker`` processes for the current app's configuration."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, count: int = 1) -> list[subprocess.Popen[bytes]]:
        started = []
        for _ in range(count):
            proc = subprocess.Popen(
                [sys.executable, "-m", "flask", "--app", "example_app", "mcsync", "worker"],
                env=self.env,
                cwd=ROOT,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
            self.procs.append(proc)
            started.append(proc)
        return started

    def kill(self, proc: subprocess.Popen[bytes]) -> None:
        """SIGKILL the worker and its work horse: the crash a test wants to survive."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)

    def stop_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                self.kill(proc)


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


def wait_for(predicate: Callable[[], Any], timeout: float = 60, what: str = "condition") -> Any:
    """Poll until ``predicate()`` is truthy; fail with ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"Timed out after {timeout}s waiting for {what}")
        time.sleep(0.1)
