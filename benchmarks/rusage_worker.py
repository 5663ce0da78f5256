"""``flask mcsync worker`` that reports its peak memory when it stops (used by bench_export).

It runs the very code the CLI command runs (``create_app()`` then
:func:`flask_mcsync.worker.run_worker`), configured from the same environment
variables. When the worker stops (SIGTERM asks RQ for a warm shutdown, so ``work()``
returns), it writes ``getrusage`` to the JSON file given as the only argument:

* ``self_maxrss_kb``: the peak resident set of the worker process itself: its VmHWM
  (``/proc/self/status``), not ``getrusage``'s ``ru_maxrss``, which Linux carries over
  ``execve`` from the process that spawned it: a worker started by a 500 MB benchmark
  process reported 500 MB whatever it did (``self_ru_maxrss_kb`` keeps that figure);
* ``children_maxrss_kb``: the peak resident set of the largest child it has waited for,
  i.e. the largest of the work horses RQ forks for every job (a horse starts as a
  copy-on-write fork of the worker, so its RSS includes the pages it shares with it);
* ``horse_maxrss_kb_by_job``: per job function (the planner apart from the batch
  steps), the peak of the process that ran it (see ``_watch_jobs``).

Each peak is the kernel's own high-water mark, so no short spike between two samples is
missed, which a /proc sampler cannot promise.
"""

from __future__ import annotations

import cProfile
import json
import os
import resource
import sys
import time
from pathlib import Path
from typing import Any

HORSE_PEAKS: dict[str, int] = {}
WAITS: dict[str, float] = {}


def own_peak_kb() -> int:
    """This process's peak resident set since its ``execve`` (VmHWM), in kB; off Linux,
    ``ru_maxrss`` (which may include the spawning process's, see above)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


# BENCH_PROFILE=FILE (in-process workers): cProfile of the jobs, written at exit
# to FILE.<pid>, for pstats.
PROFILE = cProfile.Profile() if os.environ.get("BENCH_PROFILE") else None
# BENCH_TIMELINE=FILE: every job's start and end (wall clock), function, arguments and
# CPU, written at exit to FILE.<pid> as JSON lines: where the workers waited for work.
TIMELINE: list[dict[str, Any]] | None = [] if os.environ.get("BENCH_TIMELINE") else None


def _watch_jobs() -> None:
    """Record, per job function, the peak RSS of the process that ran it.

    With a work horse per job (``MCSYNC_FORK_PER_JOB``): each horse's own peak, from the
    ``wait4`` rusage of that horse. In process (the default): the worker's high-water
    mark (VmHWM) when a job of that function ends (the process's peak so far: an upper
    bound).
    """
    from flask_mcsync.worker import InProcessWorker, McSyncWorker

    fork, wait = McSyncWorker.fork_work_horse, McSyncWorker.wait_for_horse
    execute = InProcessWorker.execute_job
    statements: list[str] = []
    if TIMELINE is not None:
        import sqlalchemy as sa

        @sa.event.listens_for(sa.engine.Engine, "before_cursor_execute")
        def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
            statements.append(" ".join(statement.split())[:70])

        @sa.event.listens_for(sa.engine.Engine, "commit")
        def committed(conn: Any) -> None:
            statements.append("COMMIT")

        # Wall time of each job spent in HTTP requests, in SQL and in Redis.
        import redis
        import requests

        def add(kind: str, seconds: float) -> None:
            WAITS[kind] = WAITS.get(kind, 0.0) + seconds
            WAITS[kind + " calls"] = WAITS.get(kind + " calls", 0) + 1

        def timed(cls: Any, method: str, kind: str) -> None:
            inner = getattr(cls, method)

            def wrapper(*args: Any, **kwargs: Any) -> Any:
                started = time.perf_counter()
                try:
                    return inner(*args, **kwargs)
                finally:
                    took = time.perf_counter() - started
                    add(kind, took)
                    if kind == "http":  # and by request: a poll, an archive, a POST...
                        add(f"http {_request_kind(args[1])}", took)

            setattr(cls, method, wrapper)

        timed(requests.Session, "send", "http")
        timed(redis.Redis, "execute_command", "redis")
        if os.environ.get("BENCH_REDIS_COMMANDS"):
            inner_execute = redis.Redis.execute_command

            def named(self: Any, *args: Any, **kwargs: Any) -> Any:
                statements.append(f"REDIS {args[0]}")
                return inner_execute(self, *args, **kwargs)

            redis.Redis.execute_command = named  # type: ignore[method-assign]
            inner_pipe = redis.client.Pipeline.execute

            def piped(self: Any, *args: Any, **kwargs: Any) -> Any:
                statements.append(
                    "REDIS PIPE " + ",".join(str(c[0][0]) for c in self.command_stack)
                )
                return inner_pipe(self, *args, **kwargs)

            redis.client.Pipeline.execute = piped  # type: ignore[method-assign]
        timed(redis.client.Pipeline, "execute", "redis")
        timed(sa.engine.default.DefaultDialect, "do_execute", "sql")
        timed(sa.engine.default.DefaultDialect, "do_executemany", "sql")
        timed(sa.engine.default.DefaultDialect, "do_commit", "commit")
        from flask_mcsync import gateway, outcomes

        timed(outcomes, "_insert_rows", "insert rows")
        timed(gateway, "read_results_archive", "parse archive")

    def note(name: str, kb: int) -> None:
        HORSE_PEAKS[name] = max(HORSE_PEAKS.get(name, 0), kb)

    def fork_work_horse(self: Any, job: Any, queue: Any) -> Any:
        self._bench_func = job.func_name
        return fork(self, job, queue)

    def wait_for_horse(self: Any) -> Any:
        pid, stat, rusage = wait(self)
        if rusage is not None:
            note(getattr(self, "_bench_func", "?"), rusage.ru_maxrss)
        return pid, stat, rusage

    def execute_job(self: Any, job: Any, queue: Any) -> Any:
        if PROFILE is not None:
            PROFILE.enable()
        start, cpu = time.time(), time.process_time()
        try:
            return execute(self, job, queue)
        finally:
            if PROFILE is not None:
                PROFILE.disable()
            if TIMELINE is not None:
                TIMELINE.append(
                    {
                        "func": job.func_name.rsplit(".", 1)[-1],
                        "args": [str(a) for a in job.args],
                        "start": start,
                        "end": time.time(),
                        "cpu": time.process_time() - cpu,
                        "sql": list(statements),
                        "waits": dict(WAITS),
                    }
                )
                statements.clear()
                WAITS.clear()
            note(job.func_name, own_peak_kb())

    McSyncWorker.fork_work_horse = fork_work_horse  # type: ignore[method-assign]
    McSyncWorker.wait_for_horse = wait_for_horse  # type: ignore[method-assign]
    InProcessWorker.execute_job = execute_job  # type: ignore[method-assign]


def _request_kind(request: Any) -> str:
    """What an HTTP request of a worker was, by its method and path."""
    url = str(request.url)
    if "/batch-results/" in url or url.endswith(".tar.gz"):
        return "GET results archive"
    if "/batches/" in url:
        return f"{request.method} /batches/{{id}}"
    if url.rstrip("/").endswith("/batches"):
        return f"{request.method} /batches"
    return f"{request.method} other"


def _cpu_s(who: int) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def _report(path: Path, clean: bool, startup_cpu_s: float) -> None:
    if PROFILE is not None:
        PROFILE.dump_stats(f"{os.environ['BENCH_PROFILE']}.{os.getpid()}")
    if TIMELINE is not None:
        with open(f"{os.environ['BENCH_TIMELINE']}.{os.getpid()}", "w", encoding="utf-8") as out:
            out.writelines(json.dumps(entry) + "\n" for entry in TIMELINE)
    me = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    path.write_text(
        json.dumps(
            {
                "self_maxrss_kb": own_peak_kb(),
                "self_ru_maxrss_kb": me.ru_maxrss,  # includes the spawner's, see above
                "children_maxrss_kb": children.ru_maxrss,
                "self_cpu_s": me.ru_utime + me.ru_stime,
                "children_cpu_s": children.ru_utime + children.ru_stime,
                # Importing the package and the shop and making the app, before the
                # worker listens: a constant of the process, not a cost of the export.
                "startup_cpu_s": startup_cpu_s,
                "horse_maxrss_kb_by_job": HORSE_PEAKS,
                "clean_exit": clean,
            }
        )
    )


def main() -> None:
    if len(sys.argv) != 2:
        sys.exit("usage: rusage_worker.py REPORT.json")
    report = Path(sys.argv[1])

    # The example shop is not installed with the package (only flask_mcsync is): it is
    # imported from the checkout, as common.py does for the other benchmarks.
    root = str(Path(__file__).resolve().parent.parent)
    if root not in sys.path:
        sys.path.insert(0, root)
    from example_app import create_app
    from flask_mcsync.worker import run_worker

    _watch_jobs()
    if os.environ.get("BENCH_PYSPY"):
        # BENCH_PYSPY=FILE: py-spy samples this worker's CPU (no idle stacks) into
        # FILE.<pid> (collapsed stacks); it ends when the worker does.
        import subprocess

        subprocess.Popen(
            [
                "py-spy",
                "record",
                "-p",
                str(os.getpid()),
                "-f",
                "raw",
                "-r",
                "200",
                "--nonblocking",
                "-o",
                f"{os.environ['BENCH_PYSPY']}.{os.getpid()}",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    app = create_app()
    startup = _cpu_s(resource.RUSAGE_SELF)
    clean = False
    try:
        # `flask mcsync worker` runs inside the app context Flask's CLI pushes; so does this
        # (the worker's maintenance step needs it).
        with app.app_context():
            clean = run_worker(app)
    finally:
        _report(report, clean, startup)


if __name__ == "__main__":
    main()
