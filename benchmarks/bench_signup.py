"""Benchmark of auto-sync's signup hook: what a signup pays for it, and how soon the new
subscriber is in the Mailchimp audience.

(a) Request time. The example shop (``example_app``) on SQLite and on PostgreSQL gets a
    route of the benchmark's own, ``POST /bench/signup``, that does what the shop's
    ``/signup`` view does (insert a customer, flash, redirect) with or without
    ``subscriber_signed_up.send(...)`` before the commit; the shop's real ``/signup`` is
    measured beside them for reference. Requests go through Flask's test client (no
    network: the figure is the app's own time plus the test client's small overhead,
    the same for every variant), without cookies: each signup is a new visitor, as in
    a shop (with cookies, the flash messages nobody reads pile up in the session
    cookie and every request gets slower). The variants are interleaved request by request (in a
    rotating order) so drift, caches and the growing table hit them alike. Printed:
    mean / median / p95 per request, the with/without ratio, and the hook's own cost
    measured inside the view (``send`` + ``commit`` with the hook minus ``commit``
    without it; the commit is where the outbox row is inserted and its id handed to
    the background hand-off thread, which talks to Redis off the request).
    No worker runs during (a): the queued jobs are just left in Redis.

(b) Latency. One real ``flask mcsync worker`` process, the Mailchimp sandbox in a
    process of its own, auto-sync active. M signups one after the other, each waiting
    until the previous one is in the audience plus a pause (so the worker is idle when
    a signup arrives: no queueing in the figure). Latency is from just before the
    signup's ``commit()`` until the sandbox's control API first shows the member,
    polled every ``--poll-ms`` (so it is over-estimated by at most that).

(c) A hung Redis. A ``redis-server`` of the benchmark's own (free port), one worker on
    it, auto-sync active. Signups through the shop's ``/signup`` before, then during
    ``--hang-seconds`` of SIGSTOP (Redis accepts connections and never answers; the
    client's socket timeout is 10 s), one every ``--hang-every-ms``; then SIGCONT and
    the time until every one of them is in the audience.

The 1-, 5- and 15-minute load averages are printed beside each part: the machine is
shared, and its load moves the figures. It prints figures; it asserts nothing about time.

    python benchmarks/bench_signup.py [--signups 2000] [--latency-signups 300]
        [--backends sqlite,postgresql] [--pause-ms 20] [--poll-ms 2] [--hang-seconds 30]
        [--hang-every-ms 100] [--json out.json]

PostgreSQL: ``MCSYNC_BENCH_DATABASE_URL`` (default
``postgresql://postgres@127.0.0.1:5432/mcsync_bench_signup``; created if missing, its
``public`` schema is WIPED). Redis: ``MCSYNC_BENCH_SIGNUP_REDIS_URL`` (default
``redis://127.0.0.1:6379/9``, FLUSHED). SQLite lives in a temporary directory.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from common import (
    backends,
    free_port,
    fresh_start,
    mcsync_config,
    note,
    running,
    sandbox_process,
    shop_app,
    worker_env,
)
from redis import Redis

from example_app.commands import DOMAINS
from flask_mcsync.sandbox import DEFAULT_LIST_ID

DEFAULT_PG_URL = "postgresql://postgres@127.0.0.1:5432/mcsync_bench_signup"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/9"
LIST_ID = DEFAULT_LIST_ID  # the sandbox's own audience
WARMUP = 100  # requests per variant before measuring

VARIANTS = ("without hook", "with hook", "shop /signup")


# --- results ------------------------------------------------------------------------------


@dataclass
class Summary:
    count: int
    mean_ms: float
    median_ms: float
    p95_ms: float
    max_ms: float

    @classmethod
    def of(cls, seconds: list[float]) -> Summary:
        ms = sorted(s * 1000 for s in seconds)
        return cls(
            count=len(ms),
            mean_ms=statistics.fmean(ms),
            median_ms=statistics.median(ms),
            p95_ms=percentile(ms, 95),
            max_ms=ms[-1],
        )


@dataclass
class RequestResult:
    per_request: dict[str, Summary]  # by variant, the whole request through the test client
    in_view: dict[str, dict[str, Summary]]  # by variant: "send", "commit", "send+commit"
    ratio_mean: float  # with hook / without hook, whole request
    ratio_median: float
    hook_cost_mean_ms: float  # (send + commit) with hook - commit without hook
    hook_cost_median_ms: float
    hook_cpu_median_ms: float  # the same difference in the request thread's CPU time
    enqueue: Summary  # of the hook's cost: handing the row ids to the hand-off queue
    jobs_queued: int  # Redis drain jobs queued afterwards (one while none is taken)
    load: tuple[float, float, float] = (0.0, 0.0, 0.0)  # load average after (a)


@dataclass
class LatencyResult:
    signups: int
    latency: Summary
    puts: int  # PUT requests the sandbox received (one per signup expected)
    lost: int  # signups not seen in the audience within the timeout
    load: tuple[float, float, float] = (0.0, 0.0, 0.0)


@dataclass
class HangResult:
    hang_seconds: float
    before: Summary  # signup request time with Redis answering
    during: Summary  # signup request time while Redis hung
    sent_after_resume_s: float  # SIGCONT -> every signup of the hang in the audience
    lost: int  # signups of the hang not in the audience 120 s after SIGCONT
    load: tuple[float, float, float] = (0.0, 0.0, 0.0)


@dataclass
class BackendResult:
    backend: str
    requests: RequestResult
    latency: LatencyResult | None = None
    hang: HangResult | None = None
    notes: list[str] = field(default_factory=list)


def percentile(sorted_values: list[float], pct: float) -> float:
    """Nearest-rank percentile of an already sorted list."""
    if not sorted_values:
        return float("nan")
    rank = max(1, -(-len(sorted_values) * pct // 100))  # ceil
    return sorted_values[int(rank) - 1]


# --- infrastructure ---------------------------------------------------------------------


@contextlib.contextmanager
def worker_process(env: dict[str, str], log: Path) -> Iterator[Any]:
    """The real ``flask mcsync worker`` command, its output in ``log``."""
    argv = [sys.executable, "-m", "flask", "--app", "example_app", "mcsync", "worker"]
    with log.open("wb") as out, running(argv, env=env, output=out) as proc:
        yield proc


# --- the app with the benchmark's own route ---------------------------------------------


class Timings:
    """What the benchmark route measured inside the view, per variant."""

    def __init__(self) -> None:
        self.recording = False
        self.send: dict[str, list[float]] = {v: [] for v in VARIANTS[:2]}
        self.commit: dict[str, list[float]] = {v: [] for v in VARIANTS[:2]}
        self.cpu: dict[str, list[float]] = {v: [] for v in VARIANTS[:2]}  # send+commit
        self.before_commit: float = 0.0
        self.enqueue: list[float] = []  # the hook's after-commit hand-off, alone


_TIMED: list[Timings] = []  # the Timings the wrapped hand-off records into


def time_enqueue(timings: Timings) -> None:
    """Wrap the hook's after-commit hand-off (part of the commit) to time it alone."""
    from flask_mcsync.handoff import Handoff

    _TIMED[:] = [timings]
    original = Handoff.submit
    if getattr(original, "bench_wrapped", False):
        return

    def timed(self: Any, ids: list[int]) -> bool:
        t0 = time.perf_counter()
        try:
            return original(self, ids)
        finally:
            if _TIMED and _TIMED[0].recording:
                _TIMED[0].enqueue.append(time.perf_counter() - t0)

    timed.bench_wrapped = True  # type: ignore[attr-defined]
    Handoff.submit = timed  # type: ignore[method-assign]


def make_app(database_url: str, config: dict[str, Any], timings: Timings) -> Any:
    from flask import current_app, flash, redirect, request, url_for

    from example_app.models import Customer, db
    from flask_mcsync.signals import subscriber_signed_up

    app = shop_app(database_url, **config)
    time_enqueue(timings)

    @app.post("/bench/signup")
    def bench_signup() -> Any:
        """The shop's /signup, with the signal sent or not (``hook=1``)."""
        hook = request.form.get("hook") == "1"
        customer = Customer(
            email=request.form["email"].strip(),
            first_name=request.form.get("first_name", "").strip(),
            last_name=request.form.get("last_name", "").strip(),
            newsletter=bool(request.form.get("newsletter")),
        )
        db.session.add(customer)
        c0 = time.thread_time()
        t0 = time.perf_counter()
        if hook:
            subscriber_signed_up.send(current_app._get_current_object(), subscriber=customer)
        t1 = time.perf_counter()
        timings.before_commit = t1
        db.session.commit()
        t2 = time.perf_counter()
        c2 = time.thread_time()
        if timings.recording:
            variant = VARIANTS[1] if hook else VARIANTS[0]
            timings.cpu[variant].append(c2 - c0)
            timings.send[variant].append(t1 - t0)
            timings.commit[variant].append(t2 - t1)
        flash(f"Welcome, {customer.first_name or customer.email}!")
        return redirect(url_for("shop.index"))

    return app


def address(tag: str, i: int) -> str:
    """A new, valid address per signup (Mailchimp and the sandbox refuse fake domains)."""
    return f"{tag}.{i:06d}@{DOMAINS[i % len(DOMAINS)]}"


def post(client: Any, variant: str, email: str, i: int) -> float:
    data = {"email": email, "first_name": "Bench", "last_name": f"N{i}", "newsletter": "1"}
    if variant == VARIANTS[2]:
        path = "/signup"
    else:
        path = "/bench/signup"
        data["hook"] = "1" if variant == VARIANTS[1] else "0"
    t0 = time.perf_counter()
    response = client.post(path, data=data)
    elapsed = time.perf_counter() - t0
    if response.status_code != 302:
        raise RuntimeError(f"{path} answered {response.status_code} for {email}")
    return elapsed


# --- (a) request time --------------------------------------------------------------------


def bench_requests(app: Any, timings: Timings, signups: int) -> RequestResult:
    from flask_mcsync import state
    from flask_mcsync.enqueue import make_queue

    client = app.test_client(use_cookies=False)
    counter = 0
    for _ in range(WARMUP):
        for variant in VARIANTS:
            post(client, variant, address("warmup", counter), counter)
            counter += 1
    state(app).redis.flushdb()  # the warm-up's jobs

    per_request: dict[str, list[float]] = {v: [] for v in VARIANTS}
    timings.recording = True
    for i in range(signups):
        rotation = i % len(VARIANTS)
        for variant in VARIANTS[rotation:] + VARIANTS[:rotation]:
            per_request[variant].append(post(client, variant, address("signup", counter), i))
            counter += 1
    timings.recording = False
    jobs = len(make_queue(state(app)))

    summaries = {v: Summary.of(per_request[v]) for v in VARIANTS}
    in_view: dict[str, dict[str, Summary]] = {}
    for variant in VARIANTS[:2]:
        send, commit = timings.send[variant], timings.commit[variant]
        in_view[variant] = {
            "send": Summary.of(send),
            "commit": Summary.of(commit),
            "send+commit": Summary.of([s + c for s, c in zip(send, commit, strict=True)]),
        }
    with_hook, without = in_view[VARIANTS[1]]["send+commit"], in_view[VARIANTS[0]]["commit"]
    return RequestResult(
        per_request=summaries,
        in_view=in_view,
        ratio_mean=summaries[VARIANTS[1]].mean_ms / summaries[VARIANTS[0]].mean_ms,
        ratio_median=summaries[VARIANTS[1]].median_ms / summaries[VARIANTS[0]].median_ms,
        hook_cost_mean_ms=with_hook.mean_ms - without.mean_ms,
        hook_cost_median_ms=with_hook.median_ms - without.median_ms,
        hook_cpu_median_ms=Summary.of(timings.cpu[VARIANTS[1]]).median_ms
        - Summary.of(timings.cpu[VARIANTS[0]]).median_ms,
        enqueue=Summary.of(timings.enqueue),
        jobs_queued=jobs,
        load=os.getloadavg(),
    )


# --- (b) signup to member latency -----------------------------------------------------------


def bench_latency(
    app: Any,
    timings: Timings,
    sandbox: Any,
    env: dict[str, str],
    log: Path,
    count: int,
    pause: float,
    poll: float,
) -> LatencyResult:
    from example_app.models import db
    from flask_mcsync import settings, state
    from flask_mcsync.models import OutboxItem

    ext = state(app)
    # The rows of (a) are not part of this: nothing must wait for the worker but ours.
    db.session.execute(sa.delete(OutboxItem))
    settings.update(db.session, ext.config, list_id=LIST_ID)
    settings.mark_first_export_done(db.session, ext.config)
    db.session.commit()
    ext.redis.flushdb()
    sandbox.reset()

    client = app.test_client(use_cookies=False)
    latencies: list[float] = []
    lost = 0
    with worker_process(env, log) as worker:
        # Warm up: the worker is up, its first fork and connections are made.
        for i in range(5):
            email = address("latency.warmup", i)
            post(client, VARIANTS[1], email, i)
            if wait_member(sandbox, email, 60, poll) is None:
                raise RuntimeError(f"the worker did not sync the warm-up signups; see {log}")
        sandbox.reset_stats()
        for i in range(count):
            if worker.poll() is not None:
                raise RuntimeError(f"the worker exited; see {log}")
            email = address("latency", i)
            post(client, VARIANTS[1], email, i)
            committed = timings.before_commit
            seen = wait_member(sandbox, email, 30, poll)
            if seen is None:
                lost += 1
            else:
                latencies.append(seen - committed)
            time.sleep(pause)
        puts = int(sandbox.stats()["requests_by_method"].get("PUT", 0))
    return LatencyResult(
        signups=count, latency=Summary.of(latencies), puts=puts, lost=lost, load=os.getloadavg()
    )


def wait_member(sandbox: Any, email: str, timeout: float, poll: float) -> float | None:
    """perf_counter() when the sandbox first showed the member, or None."""
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        if sandbox.member(LIST_ID, email) is not None:
            return time.perf_counter()
        time.sleep(poll)
    return None


# --- (c) a hung Redis -------------------------------------------------------------------------


@contextlib.contextmanager
def own_redis() -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """A redis-server of the benchmark's own on a free port (never the shared one)."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("redis-server is not installed: (c) starts and hangs its own")
    port = free_port()
    argv = [binary, "--port", str(port), "--save", "", "--appendonly", "no"]
    with running(argv) as proc:
        client = Redis(port=port, socket_connect_timeout=0.5)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        client.close()
        try:
            yield f"redis://127.0.0.1:{port}/0", proc
        finally:
            proc.send_signal(signal.SIGCONT)  # a stopped process would not hear SIGTERM


def bench_hang(
    url: str, sandbox: Any, folder: Path, hang_seconds: float, every: float
) -> HangResult:
    from example_app.models import db
    from flask_mcsync import settings, state
    from flask_mcsync.models import OutboxItem

    with own_redis() as (redis_url, redis_proc):
        config = mcsync_config(sandbox, redis_url, MCSYNC_SWEEP_INTERVAL="2")
        app = shop_app(url, **config)
        with app.app_context():
            ext = state(app)
            ext.session.execute(sa.delete(OutboxItem))
            settings.update(ext.session, ext.config, list_id=LIST_ID)
            settings.mark_first_export_done(ext.session, ext.config)
            ext.session.commit()
            client = app.test_client(use_cookies=False)
            with worker_process(worker_env(config, url), folder / "hang-worker.log"):

                def signup(email: str, i: int) -> float:
                    data = {"email": email, "first_name": "Hang", "newsletter": "1"}
                    t0 = time.perf_counter()
                    response = client.post("/signup", data=data)
                    elapsed = time.perf_counter() - t0
                    if response.status_code != 302:
                        raise RuntimeError(f"/signup answered {response.status_code}")
                    return elapsed

                before = []
                for i in range(100):
                    before.append(signup(address("hang.before", i), i))
                    time.sleep(every)
                redis_proc.send_signal(signal.SIGSTOP)
                during, emails = [], []
                end = time.monotonic() + hang_seconds
                i = 0
                while time.monotonic() < end:
                    emails.append(address("hang.during", i))
                    during.append(signup(emails[-1], i))
                    i += 1
                    time.sleep(every)
                redis_proc.send_signal(signal.SIGCONT)
                resumed = time.perf_counter()
                waiting = set(emails)
                deadline = resumed + 120
                while waiting and time.perf_counter() < deadline:
                    waiting = {e for e in waiting if sandbox.member(LIST_ID, e) is None}
                    time.sleep(0.1)
                sent_after = time.perf_counter() - resumed
                load = os.getloadavg()
            db.session.remove()
            db.engine.dispose()
    return HangResult(
        hang_seconds=hang_seconds,
        before=Summary.of(before),
        during=Summary.of(during),
        sent_after_resume_s=sent_after,
        lost=len(waiting),
        load=load,
    )


# --- one backend ------------------------------------------------------------------------------


def bench_backend(
    backend: str, args: argparse.Namespace, sandbox: Any, redis_url: str, folder: Path
) -> BackendResult:
    from example_app.models import db

    url = fresh_start(backend, folder / "shop.db", DEFAULT_PG_URL, sandbox, redis_url)
    config = mcsync_config(sandbox, redis_url)

    timings = Timings()
    app = make_app(url, config, timings)
    with app.app_context():
        note(f"{backend}: {args.signups:,} signups per variant")
        requests = bench_requests(app, timings, args.signups)
        result = BackendResult(backend, requests)
        if args.latency_signups:
            note(f"{backend}: {args.latency_signups} signups with one worker")
            result.latency = bench_latency(
                app,
                timings,
                sandbox,
                worker_env(config, url),
                folder / "worker.log",
                args.latency_signups,
                args.pause_ms / 1000,
                args.poll_ms / 1000,
            )
        db.session.remove()
        db.engine.dispose()
    Redis.from_url(redis_url).flushdb()
    if args.hang_seconds:
        note(f"{backend}: signups during a {args.hang_seconds:g} s Redis hang")
        result.hang = bench_hang(url, sandbox, folder, args.hang_seconds, args.hang_every_ms / 1000)
    return result


# --- output -------------------------------------------------------------------------------------


def table(result: BackendResult) -> str:
    r = result.requests
    lines = [
        f"== {result.backend} ==",
        f"(a) signup request time, Flask test client, {r.per_request[VARIANTS[0]].count:,}"
        " requests per variant, interleaved",
        f"    {'variant':<16}{'mean ms':>10}{'median':>10}{'p95':>10}{'max':>10}",
    ]
    for variant in VARIANTS:
        s = r.per_request[variant]
        lines.append(
            f"    {variant:<16}{s.mean_ms:>10.3f}{s.median_ms:>10.3f}{s.p95_ms:>10.3f}"
            f"{s.max_ms:>10.2f}"
        )
    lines.append(
        f"    ratio with/without hook: {r.ratio_mean:.3f} (means), {r.ratio_median:.3f} (medians)"
    )
    lines.append("    inside the view (ms)      mean    median       p95")
    for variant in VARIANTS[:2]:
        for part in ("send", "commit"):
            s = r.in_view[variant][part]
            lines.append(
                f"    {variant + ': ' + part:<22}{s.mean_ms:>8.3f}{s.median_ms:>10.3f}"
                f"{s.p95_ms:>10.3f}"
            )
    lines.append(
        f"    hook's own cost (send+commit with - commit without): {r.hook_cost_mean_ms:.3f} ms"
        f" mean, {r.hook_cost_median_ms:.3f} ms median; {r.jobs_queued:,} jobs queued"
    )
    lines.append(
        f"    of which handing the ids to the hand-off thread after the commit:"
        f" {r.enqueue.mean_ms:.4f} ms mean, {r.enqueue.median_ms:.4f} ms median,"
        f" {r.enqueue.p95_ms:.4f} ms p95 ({r.enqueue.count:,} signups, both hooked variants)"
    )
    lines.append(
        f"    hook's own CPU time in the request thread (send+commit, medians, with -"
        f" without): {r.hook_cpu_median_ms:.3f} ms"
    )
    lines.append(f"    load average after (a): {_load(r.load)}")
    if result.latency is not None:
        lat = result.latency
        s = lat.latency
        lines += [
            f"(b) signup commit -> member in the audience, one worker, {lat.signups} signups",
            f"    median {s.median_ms:.1f} ms, p95 {s.p95_ms:.1f} ms, mean {s.mean_ms:.1f} ms,"
            f" max {s.max_ms:.1f} ms; {lat.puts} PUTs; {lat.lost} not seen within 30 s",
            f"    load average after (b): {_load(lat.load)}",
        ]
    if result.hang is not None:
        h = result.hang
        lines += [
            f"(c) signups while Redis hung {h.hang_seconds:g} s (SIGSTOP), shop /signup, ms",
            f"    {'':<16}{'count':>8}{'median':>10}{'p95':>10}{'worst':>10}",
            f"    {'Redis answering':<16}{h.before.count:>8}{h.before.median_ms:>10.2f}"
            f"{h.before.p95_ms:>10.2f}{h.before.max_ms:>10.2f}",
            f"    {'Redis hung':<16}{h.during.count:>8}{h.during.median_ms:>10.2f}"
            f"{h.during.p95_ms:>10.2f}{h.during.max_ms:>10.2f}",
            f"    SIGCONT -> all {h.during.count} in the audience: {h.sent_after_resume_s:.1f} s;"
            f" {h.lost} missing after 120 s",
            f"    load average after (c): {_load(h.load)}",
        ]
    lines += [f"    note: {n}" for n in result.notes]
    return "\n".join(lines)


def _load(load: tuple[float, float, float]) -> str:
    return " / ".join(f"{x:.2f}" for x in load) + " (1, 5, 15 min)"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--signups", type=int, default=2000, help="requests per variant (a)")
    parser.add_argument("--latency-signups", type=int, default=300, help="signups for (b); 0: skip")
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--pause-ms", type=float, default=20.0, help="(b): idle time between")
    parser.add_argument("--poll-ms", type=float, default=2.0, help="(b): sandbox poll interval")
    parser.add_argument("--hang-seconds", type=float, default=30.0, help="(c); 0: skip")
    parser.add_argument("--hang-every-ms", type=float, default=100.0, help="(c): signup pace")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args(argv)
    names = backends(parser, args.backends)
    redis_url = os.environ.get("MCSYNC_BENCH_SIGNUP_REDIS_URL", DEFAULT_REDIS_URL)

    results = []
    with tempfile.TemporaryDirectory(prefix="mcsync-bench-signup-") as tmp, sandbox_process() as sb:
        for backend in names:
            folder = Path(tmp) / backend
            folder.mkdir()
            result = bench_backend(backend, args, sb, redis_url, folder)
            results.append(result)
            print(table(result), flush=True)
            print(flush=True)
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in results], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
