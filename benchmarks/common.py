"""What the benchmarks share: their databases, the processes they start, the example shop
they run, and the addresses they make up.

Each benchmark keeps its own database and Redis DB (see its docstring); this module only
knows how to prepare them. Scripts import it as ``common`` (``python benchmarks/x.py``
puts this folder first on ``sys.path``).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import sqlalchemy as sa

ROOT = Path(__file__).resolve().parent.parent
HERE = Path(__file__).resolve().parent
# Run by path from a checkout, the project may not be installed: make it importable.
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# The example shop's seed already knows how to make a name ASCII for an address.
from example_app.commands import ASCII  # noqa: E402

BACKENDS = ("sqlite", "postgresql")
SECRET_KEY = "bench"


def note(message: str) -> None:
    """Progress on stderr, so that stdout holds only the figures."""
    print(f"... {message}", file=sys.stderr, flush=True)


def load_average() -> str:
    """The 1-minute load average, to print beside a figure (this machine is shared)."""
    return f"{os.getloadavg()[0]:.1f}"


def backends(parser: argparse.ArgumentParser, text: str) -> list[str]:
    """``--backends sqlite,postgresql`` as a list; an unknown name is a usage error."""
    names = [b.strip() for b in text.split(",") if b.strip()]
    unknown = set(names) - set(BACKENDS)
    if unknown:
        parser.error(f"unknown backend(s): {', '.join(sorted(unknown))}")
    return names


# --- databases ----------------------------------------------------------------------------


def with_installed_driver(url: str) -> str:
    """``postgresql://`` names psycopg 3 in SQLAlchemy 2.1; the project ships psycopg2."""
    parsed = sa.make_url(url)
    if parsed.drivername == "postgresql":
        try:
            import psycopg  # noqa: F401
        except ImportError:
            return parsed.set(drivername="postgresql+psycopg2").render_as_string(False)
    return url


def fresh_postgres(url: str) -> str:
    """Create the database if missing, and empty its ``public`` schema.

    Every run starts from no rows at all: a table left by an earlier run (or an older
    schema) would skew the figures, and the benchmarks create what they need.
    """
    url = with_installed_driver(url)
    target = sa.make_url(url)
    admin = sa.create_engine(target.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        exists = conn.execute(
            sa.text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": target.database}
        ).first()
        if not exists:
            conn.exec_driver_sql(f'CREATE DATABASE "{target.database}"')
    admin.dispose()
    engine = sa.create_engine(target)
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP SCHEMA IF EXISTS public CASCADE")
        conn.exec_driver_sql("CREATE SCHEMA public")
    engine.dispose()
    return url


def database_url(backend: str, sqlite_file: Path, default_pg_url: str) -> str:
    """An empty database for ``backend``: a new SQLite file, or the wiped PostgreSQL one.

    All benchmarks read PostgreSQL's address from ``MCSYNC_BENCH_DATABASE_URL``; each has
    its own default database, so that two of them never wipe each other's.
    """
    if backend == "sqlite":
        return f"sqlite:///{sqlite_file}"
    return fresh_postgres(os.environ.get("MCSYNC_BENCH_DATABASE_URL", default_pg_url))


def fresh_start(
    backend: str, sqlite_file: Path, default_pg_url: str, sandbox: Any, redis_url: str
) -> str:
    """An empty database, Redis DB and sandbox for one backend's run; its database URL.

    Nothing of a previous backend's run (queued jobs, audience members) may count in this
    one's figures.
    """
    from redis import Redis

    url = database_url(backend, sqlite_file, default_pg_url)
    Redis.from_url(redis_url).flushdb()
    sandbox.reset()
    return url


# --- the example shop -----------------------------------------------------------------------


def mcsync_config(sandbox: Any, redis_url: str, **extra: str) -> dict[str, str]:
    """The extension's settings for the sandbox and the benchmark's own Redis DB."""
    from flask_mcsync.sandbox import DEFAULT_API_KEY

    return {
        "MCSYNC_API_KEY": DEFAULT_API_KEY,
        "MCSYNC_API_URL": f"{sandbox.base_url}/3.0/",
        "MCSYNC_REDIS_URL": redis_url,
        **extra,
    }


def shop_app(database_url: str, **config: Any) -> Any:
    """The example shop on ``database_url`` (creates its table and the mcsync ones)."""
    from example_app import create_app

    return create_app({"SQLALCHEMY_DATABASE_URI": database_url, "SECRET_KEY": SECRET_KEY, **config})


def worker_env(config: dict[str, str], database_url: str) -> dict[str, str]:
    """The environment of a worker process: the same shop and settings as ``shop_app``.

    ``flask mcsync worker`` reads its configuration from the environment; any ``MCSYNC_*``
    of the caller's shell is dropped so that it cannot point a worker elsewhere.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("MCSYNC_")}
    env.update(config, DATABASE_URL=database_url, SECRET_KEY=SECRET_KEY)
    return env


def address(first: str, last: str, n: int, domain: str, keep_case: bool = False) -> str:
    """``Léa``, ``Dubois``, 7 -> ``lea.dubois7@domain``, as example_app's seed writes them.

    The number keeps addresses distinct. Real-looking domains matter: the sandbox, like
    Mailchimp, refuses example.com, test.com and friends as fake, so a benchmark on those
    would measure error handling instead.
    """
    local = f"{first}.{last}{n}".translate(ASCII)
    return f"{local if keep_case else local.lower()}@{domain}"


# --- processes we start (and always stop) -------------------------------------------------


def peak_rss_mb(pid: int, reset: bool = False) -> float:
    """The peak resident set (VmHWM) of process ``pid`` so far, in MB; 0 if unreadable.

    ``reset`` then sets the high-water mark back to the current RSS (``clear_refs`` 5),
    so that the next reading is the peak of what came after this one.
    """
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0.0
    peaks = [line.split()[1] for line in status.splitlines() if line.startswith("VmHWM:")]
    kb = int(peaks[0]) if peaks else 0
    if reset:
        with contextlib.suppress(OSError):
            Path(f"/proc/{pid}/clear_refs").write_text("5")
    return round(kb / 1024, 1)


_TICKS = os.sysconf("SC_CLK_TCK")


def _process_cpu(pid: int) -> float:
    """CPU seconds (user + system) process ``pid`` used so far; 0 if it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _TICKS


def cpu_snapshot(sandbox_pid: int) -> dict[str, Any]:
    """CPU seconds used so far: the machine's busy time (all cores, from /proc/stat), the
    sandbox process, and each of PostgreSQL's server processes on this machine (its
    backends do a query's work, which no client's own CPU shows)."""
    ticks = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = ticks[3] + ticks[4]  # idle and iowait
    postgres: dict[int, float] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() == "postgres":
                    postgres[int(entry.name)] = _process_cpu(int(entry.name))
            except OSError:
                continue  # ended meanwhile
    return {
        "machine_busy": (sum(ticks[:8]) - idle) / _TICKS,
        "sandbox": _process_cpu(sandbox_pid),
        "postgres": postgres,
    }


def cpu_used(before: dict[str, Any], after: dict[str, Any]) -> dict[str, float]:
    """CPU seconds of each part of :func:`cpu_snapshot` between two snapshots.
    PostgreSQL's part misses the server processes that ended in between (their CPU
    leaves with them): a lower bound."""
    postgres = sum(cpu - before["postgres"].get(pid, 0.0) for pid, cpu in after["postgres"].items())
    return {
        "machine_busy": round(after["machine_busy"] - before["machine_busy"], 1),
        "sandbox": round(after["sandbox"] - before["sandbox"], 1),
        "postgres": round(postgres, 1),
    }


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 20) -> None:
    """SIGTERM (RQ: warm shutdown), then SIGKILL the whole session it leads, if needed.

    SIGTERM goes to the process alone: sent to the group it would also hit an RQ work
    horse in the middle of a job, which is not how a worker is stopped.
    """
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=timeout)
    # The process was started in its own session: its group is its own descendants
    # (work horse, scheduler) and nothing else.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=5)


@contextlib.contextmanager
def running(
    argv: list[str], env: dict[str, str] | None = None, output: IO[bytes] | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    """``argv`` run from the project root in a session of its own, stopped on the way out.

    Its own session lets ``stop_process`` kill whatever it forked, and only that.
    """
    proc = subprocess.Popen(
        argv,
        env=env,
        cwd=ROOT,
        stdout=output if output is not None else subprocess.DEVNULL,
        stderr=subprocess.STDOUT if output is not None else subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        yield proc
    finally:
        stop_process(proc)


@contextlib.contextmanager
def sandbox_process(setup: str = "") -> Iterator[Any]:
    """The Mailchimp sandbox in its own process; yields a client of its control API.

    In a thread of the benchmark's process it would share the GIL with the code being
    measured (a busy HTTP client, or the test client's requests): each would slow the
    other. ``setup``: Python statements the process runs first (a benchmark's variant).
    """
    from flask_mcsync.sandbox import SandboxClient

    port = free_port()
    code = (
        f"{setup}\n"
        "import sys; from flask_mcsync.sandbox import serve; serve('127.0.0.1', int(sys.argv[1]))"
    )
    with running([sys.executable, "-c", code, str(port)]) as proc:
        # Generous: the export benchmark asks it about 100,000s of members at once.
        client = SandboxClient(f"http://127.0.0.1:{port}", timeout=120)
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    client.stats()
                    break
                except Exception:
                    if proc.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError("the sandbox process did not start") from None
                    time.sleep(0.1)
            client.pid = proc.pid  # for peak_rss_mb(): the sandbox's own memory
            yield client
        finally:
            client.close()
