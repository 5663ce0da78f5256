"""Helpers shared by the test modules (fixtures live in conftest.py).

A module of its own, because ``conftest`` is not importable by name: tests/sandbox and
tests/browser have their own conftest.py, and whichever is imported first wins.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from flask_mcsync.sandbox import SandboxServer

ROOT = Path(__file__).resolve().parent.parent
# The CSRF token the logged-in admin client of conftest holds.
ADMIN_CSRF_TOKEN = "test-csrf-token"
# Where the example shop mounts our admin pages.
ADMIN_PREFIX = "/admin/mailchimp"

# Fast timings so crash-and-resume tests take seconds, not minutes.
FAST = {
    "MCSYNC_LEASE_SECONDS": 4,
    "MCSYNC_POLL_INTERVAL": 0.3,
    "MCSYNC_SWEEP_INTERVAL": 2,
    "MCSYNC_REQUEST_TIMEOUT": 3,
}


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


def admin_login(page: Any, base: str) -> None:
    """Log a browser page in to the example shop as its admin; it lands on our settings."""
    page.goto(f"{base}/login")
    page.fill("#password", "admin")
    page.click("button[type=submit]")
    page.wait_for_url(f"{base}{ADMIN_PREFIX}/")


def add_refused_autosync(
    session: Any,
    emails: list[str],
    title: str,
    detail: str,
    *,
    message: str,
    started_by: str = "signup",
    permanent: bool = True,
    at: datetime | None = None,
    list_id: str = "a1b2c3d4e5",
) -> Any:
    """An auto-sync Mailchimp refused: a failed run with one error outcome per address.

    The caller commits (and may add to the run first).
    """
    from flask_mcsync.models import Run

    at = at or datetime.now(timezone.utc)
    run = Run(
        kind="auto",
        list_id=list_id,
        status="failed",
        total=len(emails),
        errors=len(emails),
        started_by=started_by,
        message=message,
        created_at=at,
    )
    session.add(run)
    session.flush()
    for email in emails:
        add_error_outcome(session, run.id, email, title, detail, permanent=permanent, at=at)
    return run


def add_error_outcome(
    session: Any,
    run_id: int,
    email: str,
    title: str,
    detail: str,
    *,
    permanent: bool,
    at: datetime | None = None,
) -> None:
    """One address Mailchimp refused in run ``run_id``; the caller commits."""
    from flask_mcsync.addresses import subscriber_hash
    from flask_mcsync.models import Outcome

    session.add(
        Outcome(
            run_id=run_id,
            email=email,
            email_hash=subscriber_hash(email),
            outcome="error",
            permanent=permanent,
            error_title=title,
            error_detail=detail,
            created_at=at or datetime.now(timezone.utc),
        )
    )
