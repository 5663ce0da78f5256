"""``flask mcsync worker`` that reports its peak memory when it stops (used by bench_export).

It runs the very code the CLI command runs (``create_app()`` then
:func:`flask_mcsync.worker.run_worker`), configured from the same environment
variables. When the worker stops (SIGTERM asks RQ for a warm shutdown, so ``work()``
returns), it writes ``getrusage`` to the JSON file given as the only argument:

* ``self_maxrss_kb``: the peak resident set of the worker process itself;
* ``children_maxrss_kb``: the peak resident set of the largest child it has waited for,
  i.e. the largest of the work horses RQ forks for every job (a horse starts as a
  copy-on-write fork of the worker, so its RSS includes the pages it shares with it);
* ``horse_maxrss_kb_by_job``: the same peak, per job function (the planner's horse
  apart from the batch steps' horses), from the ``wait4`` rusage of each horse.

The peak is the kernel's own high-water mark, so no short spike between two samples is
missed, which a /proc sampler cannot promise.
"""

from __future__ import annotations

import json
import resource
import sys
from pathlib import Path
from typing import Any

HORSE_PEAKS: dict[str, int] = {}


def _watch_horses() -> None:
    """Record each work horse's own peak RSS under its job's function name."""
    from flask_mcsync.worker import McSyncWorker

    fork, wait = McSyncWorker.fork_work_horse, McSyncWorker.wait_for_horse

    def fork_work_horse(self: Any, job: Any, queue: Any) -> Any:
        self._bench_func = job.func_name
        return fork(self, job, queue)

    def wait_for_horse(self: Any) -> Any:
        pid, stat, rusage = wait(self)
        if rusage is not None:
            name = getattr(self, "_bench_func", "?")
            HORSE_PEAKS[name] = max(HORSE_PEAKS.get(name, 0), rusage.ru_maxrss)
        return pid, stat, rusage

    McSyncWorker.fork_work_horse = fork_work_horse  # type: ignore[method-assign]
    McSyncWorker.wait_for_horse = wait_for_horse  # type: ignore[method-assign]


def _report(path: Path, clean: bool) -> None:
    me = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    path.write_text(
        json.dumps(
            {
                "self_maxrss_kb": me.ru_maxrss,  # Linux reports kilobytes
                "children_maxrss_kb": children.ru_maxrss,
                "self_cpu_s": me.ru_utime + me.ru_stime,
                "children_cpu_s": children.ru_utime + children.ru_stime,
                "horse_maxrss_kb_by_job": HORSE_PEAKS,
                "clean_exit": clean,
            }
        )
    )


def main() -> None:
    if len(sys.argv) != 2:
        sys.exit("usage: rusage_worker.py REPORT.json")
    report = Path(sys.argv[1])

    from example_app import create_app
    from flask_mcsync.worker import run_worker

    _watch_horses()
    app = create_app()
    clean = False
    try:
        # `flask mcsync worker` runs inside the app context Flask's CLI pushes; so does this
        # (the worker's maintenance step needs it).
        with app.app_context():
            clean = run_worker(app)
    finally:
        _report(report, clean)


if __name__ == "__main__":
    main()
