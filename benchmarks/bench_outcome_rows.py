"""What writing one batch's 1,000 outcome rows costs on SQLite, by history and by index
(issue 10, targets 1 and 2).

Every address of an export gets a row in ``mcsync_outcomes``, written by
:func:`flask_mcsync.outcomes.record` in the batch's commit. This builds the table as the
models declare it, fills it with ``--history`` earlier rows (addresses of their own, one
second per 1,000 rows, as exports write them), then times ``record`` + commit of
``--batches`` batches of 1,000 new addresses, in a transaction each, as a worker does.
Between two batches a second connection commits a row elsewhere, as the other worker
does: SQLite then starts each transaction with its page cache emptied.

For each history size it runs the table as declared, then without each of its indexes
in turn (dropped on a copy of the file), so the cost of each shows; ``--journal wal``
sets WAL and ``synchronous=NORMAL`` (docs/operations.rst). CPU is this process's
(``time.process_time``), wall is the clock; both per batch of 1,000 rows, the median (and the mean
and 90th percentile) of the batches after the first five.

    python benchmarks/bench_outcome_rows.py [--history 100000,1900000] [--batches 40]
        [--journal default|wal] [--wal-autocheckpoint 1000,10000,40000]
        [--pragma 'NAME=VALUE[;NAME=VALUE],...']

``--wal-autocheckpoint`` compares SQLite's WAL checkpoint intervals instead (WAL, the
table as declared, each setting twice in turn); ``--pragma`` compares any settings the
same way, e.g. ``--pragma cache_size=-2000,cache_size=-65536``. Since 143b626
``--journal wal`` runs with the example shop's 40,000 pages between checkpoints; the
README's WAL figures before 2026-11-27 21:00 were taken at SQLite's 1,000.

The files live in a temporary folder, kept between runs (``--folder``) because
writing 1.9M history rows takes a minute.
"""

from __future__ import annotations

import argparse
import shutil
import sqlite3
import statistics
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from common import load_average, note
from sqlalchemy.orm import Session

from example_app import sqlite_for_workers
from flask_mcsync.addresses import subscriber_hash
from flask_mcsync.models import Outcome
from flask_mcsync.outcomes import AddressOutcome, Result, record

SENT = {"merge_fields": {"FNAME": "Léa", "LNAME": "Dubois"}, "status_if_new": "subscribed"}
# Far in the past, so the new rows (stamped now) append to the time indexes, as in life.
START = datetime(2000, 1, 1)


def history_file(folder: Path, rows: int) -> Path:
    """A SQLite file holding the outcomes table with ``rows`` earlier rows (made once)."""
    path = folder / f"history-{rows}.db"
    if path.exists():
        return path
    note(f"writing {rows:,} history rows")
    engine = sa.create_engine(f"sqlite:///{path}")
    Outcome.__table__.create(engine)
    engine.dispose()
    columns = "run_id, batch_id, email, email_hash, outcome, permanent, sent, created_at"
    sent = '{"merge_fields":{"FNAME":"L\\u00e9a","LNAME":"Dubois"},"status_if_new":"subscribed"}'
    with sqlite3.connect(path) as connection:
        for start in range(0, rows, 100_000):
            block = []
            for n in range(start, min(start + 100_000, rows)):
                email = f"earlier{n}@example.com"
                block.append(
                    (
                        n // 100_000 + 1,
                        n // 1000 + 1,
                        email,
                        subscriber_hash(email),
                        "updated",
                        0,
                        sent,
                        (START + timedelta(seconds=n // 1000)).isoformat(" "),
                    )
                )
            connection.executemany(
                f"INSERT INTO mcsync_outcomes ({columns}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", block
            )
    return path


def measure(
    source: Path, drop: str | None, journal: str, batches: int, pragma: str | None = None
) -> tuple[str, str]:
    """CPU and wall milliseconds per batch of 1,000 rows (record + commit): median, and
    mean / 90th percentile (a WAL checkpoint lands in some batches' commit)."""
    work = source.with_name(f"work-{source.name}")
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(f"{work}{suffix}").unlink(missing_ok=True)
    shutil.copyfile(source, work)
    engine = sa.create_engine(f"sqlite:///{work}")

    if journal == "wal":  # as the example shop runs it
        sa.event.listen(engine, "connect", sqlite_for_workers)
        if pragma is not None:  # after the shop's own settings, so this one holds

            @sa.event.listens_for(engine, "connect")
            def _variant(connection: Any, _record: Any) -> None:
                for setting in pragma.split(";"):
                    connection.execute(f"PRAGMA {setting}")

    other = engine.connect()  # the other worker
    other.exec_driver_sql("CREATE TABLE IF NOT EXISTS other_writer (x INTEGER)")
    if drop:
        other.exec_driver_sql(f"DROP INDEX {drop}")
    other.commit()
    cpu: list[float] = []
    wall: list[float] = []
    with Session(engine) as session:
        for n in range(batches):
            outcomes = [
                AddressOutcome(f"new{n}.{i}@example.com", Result.UPDATED, sent=SENT)
                for i in range(1000)
            ]
            cpu_start, wall_start = time.process_time(), time.perf_counter()
            record(session, 1, outcomes, batch_id=n, bump=False)
            session.commit()
            if n >= WARM_UP:
                cpu.append((time.process_time() - cpu_start) * 1000)
                wall.append((time.perf_counter() - wall_start) * 1000)
            other.exec_driver_sql("INSERT INTO other_writer VALUES (1)")
            other.commit()
    other.close()
    engine.dispose()
    return _summary(cpu), _summary(wall)


# The first batches warm the interpreter and the OS's file cache: not timed.
WARM_UP = 5


def _summary(values: list[float]) -> str:
    p90 = statistics.quantiles(values, n=10)[-1]
    return f"{statistics.median(values):.1f} ({statistics.mean(values):.1f} / {p90:.1f})"


def filesystem(folder: Path) -> str:
    """The type of the filesystem ``folder`` is on (fsync is free on a tmpfs)."""
    best, kind = "", "unknown"
    with open("/proc/mounts") as mounts:
        for line in mounts:
            _, point, fstype, *_ = line.split()
            if str(folder.resolve()).startswith(point) and len(point) > len(best):
                best, kind = point, fstype
    return kind


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--history", default="100000,1900000")
    parser.add_argument("--batches", type=int, default=40)
    parser.add_argument("--journal", choices=("default", "wal"), default="default")
    parser.add_argument(
        "--wal-autocheckpoint",
        help="with --journal wal: pages between checkpoints, comma-separated to compare"
        " (default: the example shop's)",
    )
    parser.add_argument(
        "--pragma",
        help="with --journal wal: SQLite settings to compare, comma-separated variants, each"
        " one or more NAME=VALUE joined by ';' (e.g. cache_size=-2000,cache_size=-65536)",
    )
    parser.add_argument("--folder", default=str(Path(tempfile.gettempdir()) / "mcsync-bench-rows"))
    args = parser.parse_args()
    if args.batches < WARM_UP + 2:
        parser.error(
            f"--batches: at least {WARM_UP + 2} (the first {WARM_UP} warm up and are not"
            " timed; a median and a 90th percentile need two more)"
        )
    if args.wal_autocheckpoint:
        args.pragma = ",".join(
            f"wal_autocheckpoint={int(n)}" for n in args.wal_autocheckpoint.split(",")
        )
    if args.pragma:
        args.journal = "wal"  # the variants are compared as the example shop runs SQLite
    folder = Path(args.folder)
    folder.mkdir(parents=True, exist_ok=True)
    sizes = [int(s) for s in args.history.split(",")]
    indexes = [None, *sorted(index.name for index in Outcome.__table__.indexes)]
    print(
        f"SQLite {sqlite3.sqlite_version}, journal {args.journal}, {args.batches} batches,"
        f" files on {filesystem(folder)}; ms per batch: median (mean / 90th percentile)"
    )
    if args.pragma:
        # Each setting in turn, twice, on the table as declared: the index costs are above.
        variants = args.pragma.split(",")
        print("| history rows | settings | CPU ms / 1,000 rows | wall ms | load |")
        print("|---:|---|---:|---:|---|")
        for size in sizes:
            source = history_file(folder, size)
            for _ in range(2):
                for variant in variants:
                    cpu, wall = measure(source, None, "wal", args.batches, variant)
                    print(
                        f"| {size:,} | {variant} | {cpu} | {wall} | {load_average()} |", flush=True
                    )
        return
    print("| history rows | index dropped | CPU ms / 1,000 rows | wall ms | load |")
    print("|---:|---|---:|---:|---|")
    for size in sizes:
        source = history_file(folder, size)
        for drop in indexes:
            cpu, wall = measure(source, drop, args.journal, args.batches)
            print(
                f"| {size:,} | {drop or '(none: as declared)'} | {cpu} | {wall}"
                f" | {load_average()} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
