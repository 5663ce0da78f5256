"""What one progress read costs at 10 batches and at 2,000 (issue 10, target 5).

The progress window, ``flask mcsync export --wait`` and ``bench_export.py``'s poll all
call :func:`flask_mcsync.runs.progress`. For each backend this builds a run of N
batches (each with a 1,000-address payload, like a real export's rows: most done, 10 in
flight, the rest waiting) and times ``progress()`` against what it did before: reading
every batch row of the run to sum it.

    python benchmarks/bench_progress.py [--backends sqlite,postgresql] [--sizes 10,2000]
        [--repeat 50]

PostgreSQL: ``MCSYNC_BENCH_DATABASE_URL`` (default
``postgresql://postgres@127.0.0.1:5432/mcsync_bench_progress``; created if missing, its
``public`` schema is WIPED). No ``ANALYZE`` is run: a host may never run it.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from common import backends, database_url, load_average, note
from sqlalchemy.orm import Session

DEFAULT_PG_URL = "postgresql://postgres@127.0.0.1:5432/mcsync_bench_progress"


def build(session: Session, batches: int) -> int:
    """A run of ``batches`` batches; returns its id."""
    from flask_mcsync.models import Batch, Run
    from flask_mcsync.times import utcnow

    payload = [[f"person{i}@gmail.com", {"FNAME": "Léa", "LNAME": "Dubois"}] for i in range(1000)]
    in_flight = min(10, batches)
    done = max(batches - in_flight - batches // 10, 0)
    run = Run(
        kind="export",
        list_id="bench",
        status="running",
        batch_size=1000,
        batch_count=batches,
        batches_done=done,
        total=1000 * batches,
        created=1000 * done,
        started_at=utcnow(),
    )
    session.add(run)
    session.flush()
    rows = []
    for seq in range(1, batches + 1):
        status = "done" if seq <= done else "processing" if seq <= done + in_flight else "waiting"
        rows.append(
            {
                "run_id": run.id,
                "seq": seq,
                "status": status,
                "size": 1000,
                "first_address": payload[0][0],
                "last_address": payload[-1][0],
                "payload": payload,
                "total_operations": 1000,
                "finished_operations": 1000 if status == "done" else 400 * (status != "waiting"),
                "created": 1000 if status == "done" else 0,
            }
        )
        if len(rows) == 100:
            session.execute(sa.insert(Batch), rows)
            rows = []
    if rows:
        session.execute(sa.insert(Batch), rows)
    session.commit()
    return int(run.id)


def read_every_batch(session: Session, run_id: int) -> Any:
    """What progress() did before: every batch row of the run, summed in Python."""
    from flask_mcsync.models import Batch, Run
    from flask_mcsync.runs import BATCH_COLUMNS

    session.get(Run, run_id)
    rows = session.execute(
        sa.select(*BATCH_COLUMNS).where(Batch.run_id == run_id).order_by(Batch.seq)
    ).all()
    return sum(r.retries for r in rows), len(rows)


def timed(call: Any, repeat: int, clock: Any = time.perf_counter) -> float:
    """Median milliseconds of ``call()``, each in a fresh transaction (as a poll is).

    ``clock=time.process_time``: this process's CPU only, which a loaded machine
    disturbs far less than wall time (on SQLite that is all the work; on PostgreSQL the
    server's share is left out)."""
    times = []
    for _ in range(repeat):
        started = clock()
        call()
        times.append((clock() - started) * 1000)
    return statistics.median(times)


def bench(backend: str, sizes: list[int], repeat: int, folder: Path) -> list[dict[str, Any]]:
    from flask_mcsync.migrations import upgrade
    from flask_mcsync.runs import progress

    url = database_url(
        backend,
        folder / "progress.db",
        os.environ.get("MCSYNC_BENCH_DATABASE_URL", DEFAULT_PG_URL),
    )
    engine = sa.create_engine(url)
    upgrade(engine)
    out = []
    with Session(engine) as session:
        for size in sizes:
            note(f"{backend}: a run of {size:,} batches")
            run_id = build(session, size)

            def new(run_id: int = run_id) -> None:
                session.expire_all()
                progress(session, run_id)
                session.commit()

            def old(run_id: int = run_id) -> None:
                session.expire_all()
                read_every_batch(session, run_id)
                session.commit()

            load = load_average()
            out.append(
                {
                    "backend": backend,
                    "batches": size,
                    "progress_ms": round(timed(new, repeat), 2),
                    "progress_cpu_ms": round(timed(new, repeat, time.process_time), 2),
                    "every_row_ms": round(timed(old, repeat), 2),
                    "load": load,
                }
            )
    engine.dispose()
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--sizes", default="10,2000")
    parser.add_argument("--repeat", type=int, default=50)
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    rows = []
    with tempfile.TemporaryDirectory(prefix="mcsync-progress-") as tmp:
        for backend in backends(parser, args.backends):
            rows += bench(backend, sizes, args.repeat, Path(tmp))
    print(
        "| backend | batches | progress() median | its CPU in this process |"
        " reading every batch row (before) | load |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['backend']} | {r['batches']:,} | {r['progress_ms']:.2f} ms |"
            f" {r['progress_cpu_ms']:.2f} ms | {r['every_row_ms']:.2f} ms | {r['load']} |"
        )
    for backend in {r["backend"] for r in rows}:
        mine = [r for r in rows if r["backend"] == backend]
        if len(mine) > 1:
            print(
                f"{backend}: progress() at {mine[-1]['batches']:,} / at {mine[0]['batches']:,}"
                f" batches: {mine[-1]['progress_ms'] / mine[0]['progress_ms']:.2f}x (CPU"
                f" {mine[-1]['progress_cpu_ms'] / mine[0]['progress_cpu_ms']:.2f}x); reading"
                f" every row: {mine[-1]['every_row_ms'] / mine[0]['every_row_ms']:.2f}x"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
