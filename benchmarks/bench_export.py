"""Benchmark of the manual export: batch operations in RQ workers vs one PUT per address.

For each database backend it builds the example shop with N valid, opted-in customers,
measures the ceiling (``ceiling.py``: prebuilt batch payloads, 10 in flight, no database
or queue) against the empty sandbox, exports them into the Mailchimp sandbox with real
``flask mcsync worker`` processes (batches sent as Mailchimp batch operations), exports
the same audience again (``--exports``: every outcome of the first run already
recorded, every member already in the audience), then, in the same run and against the
same (reset) sandbox, exports the same rows the way most shop plugins do: one
``PUT /lists/{id}/members/{hash}`` per address, one after the other, through the
project's own gateway. It prints figures; it asserts nothing about time.

    python benchmarks/bench_export.py [--addresses 100000] [--backends sqlite,postgresql]
        [--workers 2] [--batch-size 1000] [--latency-ms 0] [--naive-limit N] [--json out.json]

PostgreSQL: ``MCSYNC_BENCH_DATABASE_URL`` (default
``postgresql://postgres@127.0.0.1:5432/mcsync_bench``; created if missing, its ``public``
schema is WIPED). Redis: ``MCSYNC_BENCH_REDIS_URL`` (default ``redis://127.0.0.1:6379/11``,
FLUSHED). SQLite lives in a temporary directory.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import timedelta, timezone
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from ceiling import Ceiling, measure
from common import (
    HERE,
    address,
    backends,
    cpu_snapshot,
    cpu_used,
    fresh_start,
    load_average,
    mcsync_config,
    note,
    peak_rss_mb,
    running,
    sandbox_process,
    shop_app,
    worker_env,
)
from redis import Redis

from example_app.commands import DOMAINS, FIRST, LAST

DEFAULT_PG_URL = "postgresql://postgres@127.0.0.1:5432/mcsync_bench"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/11"
POLL_INTERVAL = "0.5"  # MCSYNC_POLL_INTERVAL of the workers (seconds between batch polls)


# --- results ------------------------------------------------------------------------------


@dataclass
class BatchResult:
    """The export as the product does it: RQ workers, Mailchimp batch operations."""

    seconds: float  # start_export() until the run's row says it ended
    run_seconds: float  # the run's own started_at -> finished_at (from its row)
    planning_seconds: float | None  # start_export() until a poll saw every row read (to 1 s)
    addresses_per_second: float
    batches: int
    requests_total: int
    requests_by_kind: dict[str, int]
    archive_downloads: int
    max_in_flight: int
    worker_peak_rss_mb: list[float]  # per worker process: its own peak
    horse_peak_rss_mb: list[float]  # per worker process: its largest work horse's peak
    worker_cpu_s: list[float]  # per worker: its own CPU + its horses' CPU, once it was ready
    cpu_ms_per_address: float  # all workers' CPU (workers + horses) per address
    horse_peak_rss_by_job_mb: dict[str, float]  # largest horse per job function (planner...)
    progress_ms_median: float  # one runs.progress() call, as the poll below makes it
    progress_ms_max: float
    load_average: str  # 1-minute load average at the start and at the end
    created: int
    updated: int
    errors: int
    sandbox_members: int
    status: str
    jobs_enqueued: int  # export jobs queued over the run (plans and batch steps)
    failed_tries: int  # passing failures met by the batches (retried)
    most_failed_tries: int  # the most for one batch
    backoff_seconds: float  # time those retries added, summed over the batches
    sandbox_peak_rss_mb: float  # the sandbox process's peak (VmHWM) during this export
    locked_polls: int  # the benchmark's progress() calls that failed: database is locked
    # CPU seconds over the export: the machine's busy time (all cores), the sandbox's,
    # PostgreSQL's server processes' (common.cpu_snapshot)
    cpu_split: dict[str, float]


@dataclass
class NaiveResult:
    """The same rows, one PUT per address, sequentially (what most shop plugins do)."""

    measured_addresses: int
    with_connection_slots: bool
    seconds: float
    addresses_per_second: float
    extrapolated: bool
    seconds_for_all: float  # measured, or extrapolated from the measured rate
    requests_total: int
    requests_by_kind: dict[str, int]
    errors: int
    sandbox_members: int


@dataclass
class BackendResult:
    backend: str
    addresses: int
    workers: int
    batch_size: int
    latency_ms: float
    seed_seconds: float
    ceiling: Ceiling
    ceiling_after: Ceiling  # measured again after the exports
    batch: BatchResult
    again: list[BatchResult]  # the same audience exported again (outcomes recorded)
    variants: dict[str, BatchResult]  # more re-exports: other worker counts or modes
    naive: NaiveResult
    ratio: float  # batch addresses/s divided by naive addresses/s
    ceiling_ratio: float  # batch addresses/s divided by the mean of the two ceilings
    again_cpu_ratio: list[float]  # CPU per address of each re-export / the first's
    sandbox_peak_rss_ceiling_mb: float  # the sandbox's peak (VmHWM) during the ceiling
    cpu_split_ceiling: dict[str, float]  # as BatchResult.cpu_split, over the ceiling
    sandbox_peak_rss_mb: float  # the sandbox's peak over this backend's whole run
    # --history-exports: synthetic exports written before the last export, their outcome
    # rows and the seconds it took
    history: tuple[int, int, float] = (0, 0, 0.0)
    checks: dict[str, bool] = field(default_factory=dict)


# --- worker processes ----------------------------------------------------------------------


@contextlib.contextmanager
def worker_processes(env: dict[str, str], count: int, folder: Path) -> Iterator[list[Path]]:
    """``count`` real workers (see rusage_worker.py); yields the paths of their reports."""
    reports = [folder / f"worker-{i}.json" for i in range(count)]
    with contextlib.ExitStack() as stack:
        for report in reports:
            stack.enter_context(
                running([sys.executable, str(HERE / "rusage_worker.py"), str(report)], env=env)
            )
        yield reports


def wait_for_workers(redis_url: str, queue_name: str, count: int, timeout: float = 60) -> None:
    """Start timing only once every worker listens: import time is not export time."""
    from rq import Worker

    connection = Redis.from_url(redis_url)
    try:
        deadline = time.monotonic() + timeout
        while True:
            listening = [
                w for w in Worker.all(connection=connection) if queue_name in w.queue_names()
            ]
            if len(listening) >= count:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {len(listening)} of {count} workers started")
            time.sleep(0.1)
    finally:
        connection.close()


# --- databases ----------------------------------------------------------------------------


def customers(count: int) -> Iterator[list[dict[str, Any]]]:
    """``count`` distinct, valid, opted-in customers, in chunks for executemany."""
    chunk: list[dict[str, Any]] = []
    for i in range(count):
        first, last = FIRST[i % len(FIRST)], LAST[(i // len(FIRST)) % len(LAST)]
        chunk.append(
            {
                "email": address(first, last, i, DOMAINS[i % len(DOMAINS)]),
                "first_name": first,
                "last_name": last,
                "newsletter": True,
            }
        )
        if len(chunk) == 10_000:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def seed(count: int) -> float:
    from example_app.models import Customer, db

    started = time.perf_counter()
    for chunk in customers(count):
        db.session.execute(sa.insert(Customer), chunk)
    db.session.commit()
    return time.perf_counter() - started


def synthesize_history(count: int) -> tuple[int, float]:
    """``count`` earlier exports' worth of outcome rows, written straight into the tables.

    Twenty real exports of 1,000,000 addresses take hours on this machine; what the last
    export meets of them is their rows. Each synthetic export is a copy of the last
    finished export's run row (same audience, status finished, no active audience) and of
    every one of its outcome rows (same columns and values, so the same indexes grow;
    ``batch_id`` NULL, as the copies have no batch rows), moved ``i`` days into the past
    so that they are older than any real run. One ``INSERT ... SELECT`` per copy, run by
    the database; nothing runs ``ANALYZE``. Returns (rows written, seconds).
    """
    from flask_mcsync import state
    from flask_mcsync.models import Outcome, Run

    session = state().session
    started = time.perf_counter()
    source = session.scalars(
        sa.select(Run).where(Run.kind == "export", Run.status == "finished").order_by(Run.id.desc())
    ).first()
    assert source is not None, "no finished export to copy"
    copied = [c.key for c in sa.inspect(Run).columns if c.key not in ("id", "active_list_id")]
    columns = [c.name for c in Outcome.__table__.columns if c.name not in ("id", "batch_id")]
    if session.get_bind().dialect.name == "postgresql":
        shifted = "created_at - :days * interval '1 day'"
    else:  # SQLAlchemy's text form: keep the microseconds datetime() would drop
        shifted = "datetime(created_at, '-' || :days || ' days') || substr(created_at, 20)"
    moved = {"created_at": shifted, "run_id": ":run"}  # each copy belongs to its own run
    select = ", ".join(moved.get(c, c) for c in columns)
    insert = sa.text(
        f"INSERT INTO mcsync_outcomes (batch_id, {', '.join(columns)})"
        f" SELECT NULL, {select} FROM mcsync_outcomes WHERE run_id = :source"
    )
    rows = 0
    for days in range(count, 0, -1):
        values = {key: getattr(source, key) for key in copied}
        for key in ("created_at", "started_at", "finished_at"):
            if values[key] is not None:
                values[key] -= timedelta(days=days)
        run = Run(**values, active_list_id=None)
        session.add(run)
        session.flush()
        result = session.execute(insert, {"days": days, "source": source.id, "run": run.id})
        rows += result.rowcount
        session.commit()
    return rows, time.perf_counter() - started


# --- the two ways to export ---------------------------------------------------------------


def member_count(client: Any, list_id: str) -> int:
    for audience in client.lists():
        if audience["id"] == list_id:
            return int(audience["stats"]["member_count"])
    return 0


def read_reports(reports: list[Path]) -> list[dict[str, Any]]:
    return [json.loads(r.read_text()) if r.exists() else {} for r in reports]


def _ended_at(session: Any, run_id: int) -> float:
    """When the run's row says it ended, as a Unix time (0.0 when it does not say)."""
    from flask_mcsync.models import Run

    ended = session.execute(sa.select(Run.finished_at).where(Run.id == run_id)).scalar()
    session.commit()
    if ended is None:
        return 0.0
    return (ended if ended.tzinfo else ended.replace(tzinfo=timezone.utc)).timestamp()


def export_in_batches(
    args: argparse.Namespace,
    env: dict[str, str],
    sandbox: Any,
    list_id: str,
    folder: Path,
    workers: int | None = None,
) -> BatchResult:
    from flask_mcsync import state
    from flask_mcsync.enqueue import enqueued_count
    from flask_mcsync.runs import progress, start_export

    ext = state()
    session = ext.session
    for old in folder.glob("worker-*.json"):
        old.unlink()  # a report of the previous export must not count in this one
    poll_ms: list[float] = []
    locked_polls = 0
    workers = workers or args.workers
    with worker_processes(env, workers, folder) as reports, storm(sandbox, args.storm):
        wait_for_workers(env["MCSYNC_REDIS_URL"], ext.config.queue_name, workers)
        sandbox.reset_stats()
        peak_rss_mb(sandbox.pid, reset=True)
        jobs_before = enqueued_count(ext)
        load_before = load_average()
        cpu_before = cpu_snapshot(sandbox.pid)
        started, started_at = time.perf_counter(), time.time()
        run_id = start_export(ext, "bench", batch_size=args.batch_size).run.id
        planned_at: float | None = None
        while True:
            asked = time.perf_counter()
            try:
                data = progress(session, run_id)
            except sa.exc.OperationalError as exc:
                # SQLite (rollback journal, 5 s busy timeout): a writer held the database
                # longer than that. Seen at 1M under load; counted and printed, not hidden.
                if "database is locked" not in str(exc):
                    raise
                session.rollback()
                locked_polls += 1
                note(f"progress() failed: database is locked ({locked_polls} so far)")
                time.sleep(0.25)
                continue
            session.commit()  # end the read transaction so the next poll sees new rows
            poll_ms.append((time.perf_counter() - asked) * 1000)
            assert data is not None
            if planned_at is None and data["planning_done"]:
                planned_at = time.perf_counter() - started
            if data["ended"]:
                break
            # As often as the export window asks (export.js): the end time comes from
            # the run's row, so polling faster would only add load on the two cores.
            time.sleep(1.0)
        # From start_export() to the moment the run's row says it ended (same clock).
        seconds = _ended_at(session, run_id) - started_at
        seconds = seconds if seconds > 0 else time.perf_counter() - started
        cpu_split = cpu_used(cpu_before, cpu_snapshot(sandbox.pid))
        stats = sandbox.stats()
        jobs = enqueued_count(ext) - jobs_before
        load_after = load_average()
        sandbox_peak = peak_rss_mb(sandbox.pid, reset=True)
    # The workers have stopped (warm shutdown): their reports are written.
    usage = read_reports(reports)
    note(f"ended: {data['status']} after {seconds:.1f} s, {jobs} jobs, load {load_after}")
    # From the moment each worker was ready: its start (imports, the app) is left out.
    cpu = [
        u.get("self_cpu_s", 0) + u.get("children_cpu_s", 0) - u.get("startup_cpu_s", 0)
        for u in usage
    ]
    by_job: dict[str, float] = {}
    for u in usage:
        for name, kb in (u.get("horse_maxrss_kb_by_job") or {}).items():
            short = name.rsplit(".", 1)[-1]
            by_job[short] = max(by_job.get(short, 0.0), round(kb / 1024, 1))
    poll_ms.sort()
    result = BatchResult(
        seconds=round(seconds, 2),
        run_seconds=data["elapsed"],
        planning_seconds=round(planned_at, 2) if planned_at is not None else None,
        addresses_per_second=round(args.addresses / seconds, 1),
        batches=data["batch_count"],
        requests_total=stats["requests_total"],
        requests_by_kind=stats["requests_by_kind"],
        archive_downloads=stats["batches_processed"],
        max_in_flight=stats["max_in_flight"],
        worker_peak_rss_mb=[round(u.get("self_maxrss_kb", 0) / 1024, 1) for u in usage],
        horse_peak_rss_mb=[round(u.get("children_maxrss_kb", 0) / 1024, 1) for u in usage],
        worker_cpu_s=[round(c, 1) for c in cpu],
        cpu_ms_per_address=round(1000 * sum(cpu) / args.addresses, 3),
        horse_peak_rss_by_job_mb=by_job,
        progress_ms_median=round(poll_ms[len(poll_ms) // 2], 2),
        progress_ms_max=round(poll_ms[-1], 2),
        load_average=f"{load_before} → {load_after}",
        created=data["created"],
        updated=data["updated"],
        errors=data["errors"],
        sandbox_members=member_count(sandbox, list_id),
        status=data["status"],
        jobs_enqueued=jobs,
        failed_tries=data["retries"],
        most_failed_tries=data["most_retries"],
        backoff_seconds=data["retry_seconds"],
        sandbox_peak_rss_mb=sandbox_peak,
        locked_polls=locked_polls,
        cpu_split=cpu_split,
    )
    note(json.dumps(asdict(result)))  # on stderr as it comes: a long run's later failure
    return result


# The fault storm of issue 9.7: what Mailchimp's own clients survive.
STORM = {
    "error_rates": {"429": 0.10, "500": 0.05},
    "timeout_rate": 0.02,
    "timeout_seconds": 6,  # past the workers' MCSYNC_REQUEST_TIMEOUT under --storm
    "drop_rate": 0.01,
}
STORM_TIMEOUT = "5"
# Results expire for one second out of every five.
EXPIRY_ON, EXPIRY_OFF = 1.0, 4.0


@contextlib.contextmanager
def storm(sandbox: Any, enabled: bool) -> Iterator[None]:
    """Under ``--storm``: random 429/500/timeouts/drops, and results expiring now and then."""
    if not enabled:
        yield
        return
    sandbox.set_faults(**STORM)
    stop = threading.Event()

    def expire_now_and_then() -> None:
        while not stop.is_set():
            sandbox.set_faults(expire_results=True)
            stop.wait(EXPIRY_ON)
            sandbox.set_faults(expire_results=False)
            stop.wait(EXPIRY_OFF)

    thread = threading.Thread(target=expire_now_and_then, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        sandbox.clear_faults()


def export_one_by_one(args: argparse.Namespace, sandbox: Any, list_id: str) -> NaiveResult:
    """One PUT per address, in primary-key order, waiting for each answer."""
    from flask_mcsync import exclusions, settings, state
    from flask_mcsync.eligibility import scan
    from flask_mcsync.gateway import Gateway, MailchimpError, gateway_for

    ext = state()
    session = ext.session
    status_if_new = settings.load(session, ext.config).status_if_new
    gateway = gateway_for(ext)  # the same one the auto-sync uses (timeouts, connection slots)
    if args.naive_without_slots:
        # A plugin without our shared connection limit: saves two Redis calls per PUT.
        gateway = Gateway(ext.config.api_key, ext.config.api_url, ext.config.request_timeout)
    limit = min(args.naive_limit or args.addresses, args.addresses)
    sent = errors = 0
    sandbox.reset_stats()
    started = time.perf_counter()
    # The same rows the export reads, judged the same way (all are sendable here).
    for page in scan(session, ext.require_source(), exclusions.load_ruleset(session)):
        for row, verdict in page:
            if sent >= limit:
                break
            if not verdict.send:
                continue
            try:
                gateway.upsert_member(list_id, row.email.strip(), status_if_new, row.merge_fields)
            except MailchimpError:
                errors += 1
            sent += 1
        if sent >= limit:
            break
    seconds = time.perf_counter() - started
    session.commit()
    stats = sandbox.stats()
    rate = sent / seconds if seconds else 0.0
    return NaiveResult(
        measured_addresses=sent,
        with_connection_slots=not args.naive_without_slots,
        seconds=round(seconds, 2),
        addresses_per_second=round(rate, 1),
        extrapolated=sent < args.addresses,
        seconds_for_all=round(args.addresses / rate if rate else 0.0, 1),
        requests_total=stats["requests_total"],
        requests_by_kind=stats["requests_by_kind"],
        errors=errors,
        sandbox_members=member_count(sandbox, list_id),
    )


# --- one backend, end to end --------------------------------------------------------------


def bench_backend(
    backend: str, args: argparse.Namespace, sandbox: Any, redis_url: str, folder: Path
) -> BackendResult:
    from example_app.models import db
    from flask_mcsync import settings, state
    from flask_mcsync.sandbox import DEFAULT_API_KEY, DEFAULT_LIST_ID

    url = fresh_start(backend, folder / "shop.db", DEFAULT_PG_URL, sandbox, redis_url)
    if args.latency_ms:
        # Applies to every /3.0 request: the round trip to Mailchimp.
        sandbox.set_faults(latency_ms=args.latency_ms)

    extra = {"MCSYNC_REQUEST_TIMEOUT": STORM_TIMEOUT} if args.storm else {}
    config = mcsync_config(sandbox, redis_url, MCSYNC_POLL_INTERVAL=POLL_INTERVAL, **extra)
    app = shop_app(url, **config)
    env = worker_env(config, url)
    with app.app_context():
        try:
            seed_seconds = seed(args.addresses)
            ext = state()
            settings.update(
                ext.session, ext.config, list_id=DEFAULT_LIST_ID, batch_size=args.batch_size
            )

            def the_ceiling(when: str) -> tuple[Ceiling, dict[str, float], float]:
                """The ceiling against an empty audience, as the first export finds it."""
                note(f"{backend}: the ceiling{when}")
                sandbox.reset()
                peak_rss_mb(sandbox.pid, reset=True)
                cpu_before = cpu_snapshot(sandbox.pid)
                measured = measure(
                    sandbox.base_url,
                    DEFAULT_API_KEY,
                    DEFAULT_LIST_ID,
                    args.addresses,
                    args.batch_size,
                    poll_interval=float(POLL_INTERVAL),
                )
                cpu = cpu_used(cpu_before, cpu_snapshot(sandbox.pid))
                rss = peak_rss_mb(sandbox.pid, reset=True)
                note(f"ceiling{when}: {json.dumps(asdict(measured))}, sandbox peak {rss} MB")
                sandbox.reset()
                if args.latency_ms:
                    sandbox.set_faults(latency_ms=args.latency_ms)
                return measured, cpu, rss

            sandbox_start = peak_rss_mb(sandbox.pid, reset=True)
            ceiling, cpu_ceiling, sandbox_ceiling = the_ceiling("")
            note(f"{backend}: export 1")
            batch = export_in_batches(args, env, sandbox, DEFAULT_LIST_ID, folder)
            again = []
            history = (0, 0, 0.0)
            for n in range(2, args.exports + 1):
                if n == args.exports and args.history_exports:
                    note(f"{backend}: {args.history_exports} earlier exports' outcome rows")
                    history = (args.history_exports, *synthesize_history(args.history_exports))
                note(f"{backend}: export {n} (the same audience, its outcomes recorded)")
                again.append(export_in_batches(args, env, sandbox, DEFAULT_LIST_ID, folder))
            variants = {}
            for variant in args.variants:
                count, mode = variant.split(":")
                note(f"{backend}: re-export with {count} worker(s), {mode}")
                variant_env = {**env, "MCSYNC_FORK_PER_JOB": "1" if mode == "fork" else "0"}
                variants[f"re-export, {count} worker(s), {mode}"] = export_in_batches(
                    args, variant_env, sandbox, DEFAULT_LIST_ID, folder, workers=int(count)
                )
            # Measured again after the exports: this machine's speed drifts (neighbours on
            # the host) by more than a change we compare, so export 1 is set against the
            # mean of a ceiling measured before it and one after.
            ceiling_after, _, sandbox_ceiling_after = the_ceiling(", again")
            sandbox.reset()  # same sandbox, empty audience: the naive way also creates
            if args.latency_ms:
                sandbox.set_faults(latency_ms=args.latency_ms)
            naive = export_one_by_one(args, sandbox, DEFAULT_LIST_ID)
            sandbox_naive = peak_rss_mb(sandbox.pid, reset=True)
        finally:
            db.session.remove()
            db.engine.dispose()
    Redis.from_url(redis_url).flushdb()
    mean_rate = (ceiling.addresses_per_second + ceiling_after.addresses_per_second) / 2
    checks = {
        "sandbox members == N": batch.sandbox_members == args.addresses,
        "run created == N": batch.created == args.addresses,
        "run errors == 0": batch.errors == 0,
        "run finished": batch.status == "finished",
        "naive: members == addresses sent": naive.sandbox_members == naive.measured_addresses,
        "naive errors == 0": naive.errors == 0,
        "ceiling: every result parsed, no error": all(
            c.results_parsed == args.addresses and c.errors == 0 for c in (ceiling, ceiling_after)
        ),
    }
    for n, run in enumerate(again, start=2):
        checks[f"export {n}: updated == N, errors == 0, finished"] = (
            run.updated == args.addresses and run.errors == 0 and run.status == "finished"
        )
    return BackendResult(
        backend=backend,
        addresses=args.addresses,
        workers=args.workers,
        batch_size=args.batch_size,
        latency_ms=args.latency_ms,
        seed_seconds=round(seed_seconds, 2),
        ceiling=ceiling,
        batch=batch,
        again=again,
        variants=variants,
        naive=naive,
        ratio=round(batch.addresses_per_second / naive.addresses_per_second, 1)
        if naive.addresses_per_second
        else 0.0,
        ceiling_after=ceiling_after,
        ceiling_ratio=round(batch.addresses_per_second / mean_rate, 2) if mean_rate else 0.0,
        again_cpu_ratio=[
            round(r.cpu_ms_per_address / batch.cpu_ms_per_address, 2)
            if batch.cpu_ms_per_address
            else 0.0
            for r in again
        ],
        sandbox_peak_rss_ceiling_mb=sandbox_ceiling,
        cpu_split_ceiling=cpu_ceiling,
        sandbox_peak_rss_mb=max(
            [sandbox_start, sandbox_ceiling, sandbox_ceiling_after, sandbox_naive]
            + [r.sandbox_peak_rss_mb for r in [batch, *again, *variants.values()]]
        ),
        checks=checks,
        history=history,
    )


# --- output -------------------------------------------------------------------------------


def kinds(counts: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(counts.items(), key=lambda kv: -kv[1]))


def mb(values: list[float]) -> str:
    return " / ".join(f"{m:.0f} MB" for m in values)


def cpu_rows(split: dict[str, float], seconds: float) -> dict[str, str]:
    """Where the machine's CPU went over a phase: what bounds the rate on few cores."""
    cores = os.cpu_count() or 1
    return {
        "machine CPU busy": f"{split['machine_busy']:.1f} of {cores * seconds:.1f} core-s"
        f" ({100 * split['machine_busy'] / (cores * seconds):.0f} %)",
        "  sandbox CPU": f"{split['sandbox']:.1f} s",
        "  PostgreSQL server CPU": f"{split['postgres']:.1f} s",
    }


def export_column(b: BatchResult, addresses: int) -> dict[str, str]:
    by_job = ", ".join(f"{k} {v:.0f} MB" for k, v in sorted(b.horse_peak_rss_by_job_mb.items()))
    return {
        "wall time": f"{b.seconds:.1f} s",
        "addresses/s": f"{b.addresses_per_second:,.0f}",
        "load average": b.load_average,
        "API requests": f"{b.requests_total:,} (+{b.archive_downloads} archives)",
        "  by kind": kinds(b.requests_by_kind),
        "batches": str(b.batches),
        "jobs enqueued": f"{b.jobs_enqueued:,} (polls {b.requests_by_kind.get('batch', 0):,})",
        "failed tries": f"{b.failed_tries:,} (max {b.most_failed_tries}),"
        f" {b.backoff_seconds:,.0f} s backoff",
        "max in flight": str(b.max_in_flight),
        "worker peak RSS": mb(b.worker_peak_rss_mb),
        "work horse peak RSS": mb(b.horse_peak_rss_mb),
        "sandbox peak RSS": f"{b.sandbox_peak_rss_mb:.0f} MB",
        "peak RSS by job": by_job,
        "worker CPU": " / ".join(f"{c:.1f} s" for c in b.worker_cpu_s),
        "worker CPU per address": f"{b.cpu_ms_per_address:.3f} ms",
        **cpu_rows(b.cpu_split, b.seconds),
        "progress() call": f"median {b.progress_ms_median:.1f} ms, max {b.progress_ms_max:.1f}"
        + (f", {b.locked_polls} failed (database is locked)" if b.locked_polls else ""),
        "outcomes": f"created {b.created:,}, updated {b.updated:,}, errors {b.errors}",
        "sandbox members": f"{b.sandbox_members:,}",
    }


def table(result: BackendResult) -> str:
    c, b, n = result.ceiling, result.batch, result.naive
    naive_how = (
        f"first {n.measured_addresses:,}, extrapolated"
        if n.extrapolated
        else f"all {n.measured_addresses:,}"
    )
    columns: list[tuple[str, dict[str, str]]] = [
        (
            "ceiling",
            {
                "wall time": f"{c.seconds:.1f} s",
                "addresses/s": f"{c.addresses_per_second:,.0f}",
                "load average": c.load_average,
                "API requests": kinds(c.requests_by_kind),
                "worker CPU": f"client {c.client_cpu_s:.1f} s",
                "sandbox peak RSS": f"{result.sandbox_peak_rss_ceiling_mb:.0f} MB",
                "worker CPU per address": f"client {1000 * c.client_cpu_s / c.addresses:.3f} ms",
                **cpu_rows(result.cpu_split_ceiling, c.seconds),
                "outcomes": f"{c.results_parsed:,} results, errors {c.errors}",
            },
        ),
        (
            "ceiling, again",
            {
                "wall time": f"{result.ceiling_after.seconds:.1f} s",
                "addresses/s": f"{result.ceiling_after.addresses_per_second:,.0f}",
                "load average": result.ceiling_after.load_average,
            },
        ),
        ("export 1", export_column(b, result.addresses)),
    ]
    synthetic, rows, seconds = result.history
    last = len(result.again) + 1
    columns += [
        (
            f"export {i + synthetic} (after {synthetic} synthetic)"
            if synthetic and i == last
            else f"export {i}",
            export_column(r, result.addresses),
        )
        for i, r in enumerate(result.again, start=2)
    ]
    columns += [(name, export_column(r, result.addresses)) for name, r in result.variants.items()]
    columns.append(
        (
            "one PUT each",
            {
                "addresses": naive_how,
                "wall time": f"{n.seconds_for_all:,.1f} s"
                + (" (extrap.)" if n.extrapolated else ""),
                "addresses/s": f"{n.addresses_per_second:,.0f}",
                "API requests": f"{n.requests_total:,}",
                "outcomes": f"errors {n.errors}",
                "sandbox members": f"{n.sandbox_members:,}",
            },
        )
    )
    names: list[str] = []
    for _, column in columns:
        names += [k for k in column if k not in names]
    lines = [
        f"== {result.backend}: {result.addresses:,} addresses, {result.workers} workers,"
        f" batch size {result.batch_size}, sandbox latency {result.latency_ms:g} ms ==",
        f"seeded in {result.seed_seconds:.1f} s; run row: {b.run_seconds:.1f} s, planner read"
        f" every row after {b.planning_seconds} s",
        "| | " + " | ".join(title for title, _ in columns) + " |",
        "|---" * (len(columns) + 1) + "|",
    ]
    for name in names:
        lines.append(
            f"| {name.strip()} | " + " | ".join(col.get(name, "") for _, col in columns) + " |"
        )
    lines.append(
        f"  export 1 / ceiling: {result.ceiling_ratio:g} (against the mean of the ceiling"
        f" before it, {c.addresses_per_second:,.0f}/s, and after,"
        f" {result.ceiling_after.addresses_per_second:,.0f}/s); batch / one PUT: {result.ratio:g}x;"
        " CPU per address, later exports / the first: "
        + (", ".join(f"{r:g}" for r in result.again_cpu_ratio) or "-")
    )
    lines.append(f"  sandbox peak RSS over the whole run: {result.sandbox_peak_rss_mb:.0f} MB")
    if synthetic:
        lines.append(
            f"  before export {last + synthetic}: {synthetic} earlier exports synthesized,"
            f" {rows:,} outcome rows written in {seconds:.1f} s (no ANALYZE)"
        )
    failed = [name for name, ok in result.checks.items() if not ok]
    lines.append("  checks: " + ("all passed" if not failed else "FAILED: " + ", ".join(failed)))
    return "\n".join(lines)


EXPLAIN = """\
Notes: wall time runs from start_export() until the run row says it ended (workers are
already listening). Requests are the sandbox's /3.0 API requests; batch result archives
are downloaded from the file store, not the API. Peak RSS is the kernel's high-water mark
written by each worker when it stops: the worker process itself (its VmHWM), and the
largest of the work horses RQ forked for its jobs (wait4's ru_maxrss; a fork shares the
worker's pages, so the horse's RSS includes them). The sandbox's peak is its VmHWM,
reset before each phase (ceiling, each export). The naive way runs in this process, sequentially,
through the project's gateway: one pooled HTTP session for the whole loop (mailchimp3 alone
opens a new connection per call), plus a Redis connection slot per call unless
--naive-without-slots."""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--addresses", type=int, default=100_000)
    parser.add_argument(
        "--backends", default="sqlite,postgresql", help="comma-separated: sqlite, postgresql"
    )
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument(
        "--latency-ms",
        type=float,
        default=0.0,
        help="sandbox latency per API request (the round trip to Mailchimp)",
    )
    parser.add_argument(
        "--naive-limit",
        type=int,
        default=0,
        help="time the one-PUT-per-address way on the first N addresses only"
        " and extrapolate (default: all of them)",
    )
    parser.add_argument(
        "--naive-without-slots",
        action="store_true",
        help="one PUT per address without the Redis connection slot the"
        " gateway takes for each call (closer to a typical plugin)",
    )
    parser.add_argument(
        "--storm",
        action="store_true",
        help="run the batch export in a fault storm (10%% 429, 5%% 500, 2%% timeouts,"
        " 1%% dropped connections, results expiring 1 s in 5)",
    )
    parser.add_argument(
        "--exports",
        type=int,
        default=2,
        help="export the same audience this many times (the 2nd and later find every"
        " outcome of the earlier ones recorded): cost per address against history",
    )
    parser.add_argument(
        "--variants",
        default="",
        help="after the exports, re-export the audience with other workers, e.g."
        " '1:inprocess,2:fork' (workers:inprocess|fork), one column each",
    )
    parser.add_argument(
        "--history-exports",
        type=int,
        default=0,
        help="before the last export, write K earlier exports' outcome rows straight into"
        " the database (copies of the last finished export's rows, K finished runs of the"
        " same audience): the last export then meets ~K+1 exports of history",
    )
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args(argv)
    args.backends = backends(parser, args.backends)
    if args.history_exports and args.exports < 2:
        parser.error("--history-exports needs --exports 2 or more (it precedes the last one)")
    args.variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    for variant in args.variants:
        count, _, mode = variant.partition(":")
        if not count.isdigit() or mode not in ("inprocess", "fork"):
            parser.error(f"--variants: {variant!r} is not WORKERS:inprocess or WORKERS:fork")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    redis_url = os.environ.get("MCSYNC_BENCH_REDIS_URL", DEFAULT_REDIS_URL)
    results: list[BackendResult] = []
    with tempfile.TemporaryDirectory(prefix="mcsync-bench-") as tmp, sandbox_process() as sandbox:
        for backend in args.backends:
            folder = Path(tmp) / backend
            folder.mkdir()
            note(f"{backend}: seeding {args.addresses:,} customers and exporting")
            result = bench_backend(backend, args, sandbox, redis_url, folder)
            results.append(result)
            print(table(result), flush=True)
            print(flush=True)
    print(EXPLAIN)
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "date": time.strftime("%Y-%m-%d %H:%M:%S %z"),
                    "cpus": os.cpu_count(),
                    "results": [asdict(r) for r in results],
                },
                indent=2,
            )
        )
    return 0 if all(all(r.checks.values()) for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
