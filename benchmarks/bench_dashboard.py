"""Benchmark of the Sync status dashboard and the diagnostic tool on a year of history.

For SQLite and PostgreSQL it builds the mcsync tables (``flask_mcsync.migrations``, through
the example shop, which also creates its ``shop_customers`` table), bulk-loads a realistic
year -- 50 manual exports of ~20k addresses, thousands of auto-syncs and re-syncs with one
outcome each, 1,000,000 per-address outcomes of which 10,000 are errors with Mailchimp's
titles and details, 200,000 customers -- runs ANALYZE, then times (median of several runs)
what the dashboard and the diagnostic do:

* ``status.report(session, days)`` for 1, 7, 30 and 365 days,
* ``status.errors(period=..., kind=...)``, ``status.errors(run_id=...)``,
  ``status.error_titles(run_id)`` and the CSV of a period's errors,
* ``diagnostic.diagnose(ext, email, live=False)`` for a known address,

and prints the plan of every SQL statement they send (``EXPLAIN ANALYZE`` on PostgreSQL,
``EXPLAIN QUERY PLAN`` on SQLite), flagging any full scan of ``mcsync_outcomes``. The
diagnostic's host lookup (``SubscriberSource.find``) is measured with the example shop's
plain index on ``email``, then with an index on ``lower(email)``, then on
``lower(trim(email))``. It prints figures; it asserts nothing about time.

    python benchmarks/bench_dashboard.py [--backends sqlite,postgresql] [--outcomes 1000000]
        [--errors 10000] [--customers 200000] [--repeat 7] [--json out.json] [--quiet-plans]

PostgreSQL: ``MCSYNC_BENCH_DATABASE_URL`` (default
``postgresql://postgres@127.0.0.1:5432/mcsync_bench_dash``; created if missing, its
``public`` schema is WIPED). SQLite lives in a temporary directory.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import gc
import hashlib
import io
import json
import os
import random
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from common import address, backends, database_url, shop_app

from example_app.commands import DOMAINS, FIRST, LAST
from flask_mcsync.sandbox import DEFAULT_LIST_ID as LIST_ID

DEFAULT_PG_URL = "postgresql://postgres@127.0.0.1:5432/mcsync_bench_dash"
EXPORTS = 50
AUTO_RUNS = 4000
RESYNC_RUNS = 1000

SERVICE_UNAVAILABLE = (
    "Service Unavailable: This service is temporarily unavailable. Please try again later."
)
PERMANENT_ERRORS: list[tuple[str, str]] = [
    (
        "Member In Compliance State",
        "{email} is in a compliance state due to unsubscribe, bounce, or compliance review and"
        " cannot be subscribed.",
    ),
    (
        "Forgotten Email Not Subscribed",
        "{email} was permanently deleted and cannot be re-imported. The contact must"
        " re-subscribe to get back on the list.",
    ),
    ("Invalid Resource", "{email} looks fake or invalid, please enter a real email address."),
    ("Invalid Resource", "Your merge fields were invalid. (LNAME: Please enter a value)"),
]


# --- databases ---------------------------------------------------------------------------


def make_app(url: str) -> Any:
    """The example shop on ``url``: creates shop_customers and the mcsync tables."""
    # No Redis: the dashboard and the diagnostic (live=False) only read the database.
    os.environ.pop("MCSYNC_REDIS_URL", None)
    return shop_app(url, TESTING=True)


# --- the year of history -----------------------------------------------------------------


def md5(text: str) -> str:
    return hashlib.md5(text.lower().encode()).hexdigest()


class Year:
    """Every row to load, generated deterministically in memory (tuples, not objects)."""

    def __init__(self, outcomes: int, errors: int, customers: int, seed: int = 2024) -> None:
        rng = random.Random(seed)
        self.now = datetime.now(timezone.utc).replace(microsecond=0)
        start = self.now - timedelta(days=365)
        self.customers: list[tuple[Any, ...]] = []
        subscribers: list[int] = []
        for i in range(1, customers + 1):
            first, last = rng.choice(FIRST), rng.choice(LAST)
            # One in ten typed with capitals: what the lower(email) indexes below are about.
            email = address(first, last, i, rng.choice(DOMAINS), keep_case=rng.random() < 0.1)
            newsletter = rng.random() < 0.7
            if newsletter:
                subscribers.append(i - 1)
            created = start - timedelta(days=rng.random() * 700)
            self.customers.append((i, email, first, last, newsletter, created))
        hashes = [md5(c[1]) for c in self.customers]

        single = AUTO_RUNS + RESYNC_RUNS
        per_export = (outcomes - single) // EXPORTS
        export_errors = int(errors * 0.95)
        error_slots = set(rng.sample(range(per_export * EXPORTS), export_errors))
        single_errors = set(rng.sample(range(single), errors - export_errors))

        self.runs: list[tuple[Any, ...]] = []
        self.outcomes: list[tuple[Any, ...]] = []
        self.outbox: list[tuple[Any, ...]] = []
        run_id = 0
        outcome_id = 0

        def outcome(run: int, cust: int, kind: str, at: datetime, error: bool) -> str:
            nonlocal outcome_id
            outcome_id += 1
            _, email, first, last, _, _ = self.customers[cust]
            sent = json.dumps(
                {"merge_fields": {"FNAME": first, "LNAME": last}, "status_if_new": "subscribed"}
            )
            # The columns that differ by outcome: (outcome, permanent, error_title,
            # error_detail, mailchimp_status, sent); the row is OUTCOME_COLUMNS' order.
            if error and rng.random() < 0.7:
                title, detail = rng.choice(PERMANENT_ERRORS)
                varying = ("error", True, title, detail.format(email=email), None, sent)
            elif error:
                gave_up = "Gave up after 8 attempts"
                varying = ("error", False, gave_up, SERVICE_UNAVAILABLE, None, sent)
            elif kind == "skipped":
                excluded = "Excluded by the whole domain 'mailinator.com' rule."
                varying = ("skipped", False, "Skipped", excluded, None, None)
            else:
                varying = (kind, False, None, None, "subscribed", sent)
            self.outcomes.append((outcome_id, run, None, email, hashes[cust], *varying, at))
            return varying[0]

        def outbox_item(
            cust: int, status: str, attempts: int, at: datetime, run: int | None = None
        ) -> None:
            """A signup's upsert in the outbox, in OUTBOX_COLUMNS' order."""
            email = self.customers[cust][1]
            item_id = len(self.outbox) + 1
            self.outbox.append(
                (item_id, "upsert", email, hashes[cust], status, attempts, at, run, at)
            )

        # Manual exports, every ~7 days, each over the next slice of the subscribers.
        slot = 0
        self.export_ids: list[int] = []
        for k in range(EXPORTS):
            run_id += 1
            created_at = start + timedelta(days=k * 365 / EXPORTS + 0.3)
            counts = {"created": 0, "updated": 0, "skipped": 0, "error": 0}
            first_export = k == 0
            for n in range(per_export):
                cust = subscribers[(k * per_export + n) % len(subscribers)]
                draw = rng.random()
                kind = (
                    "created"
                    if first_export or draw < 0.02
                    else ("skipped" if draw < 0.03 else "updated")
                )
                at = created_at + timedelta(seconds=5 + n * 0.03)
                counts[outcome(run_id, cust, kind, at, slot in error_slots)] += 1
                slot += 1
            finished = created_at + timedelta(seconds=5 + per_export * 0.03 + 2)
            self.runs.append(
                self._run(run_id, "export", created_at, finished, per_export, counts, "admin")
            )
            self.export_ids.append(run_id)

        # Auto-syncs (from signups) and re-syncs (from the diagnostic), one address each.
        for n in range(single):
            run_id += 1
            kind = "auto" if n < AUTO_RUNS else "resync"
            created_at = start + timedelta(seconds=rng.random() * 365 * 86400)
            cust = rng.choice(subscribers)
            counts = {"created": 0, "updated": 0, "skipped": 0, "error": 0}
            result = "created" if kind == "auto" else rng.choice(["updated", "skipped"])
            counts[
                outcome(run_id, cust, result, created_at + timedelta(seconds=1), n in single_errors)
            ] += 1
            self.runs.append(
                self._run(
                    run_id,
                    kind,
                    created_at,
                    created_at + timedelta(seconds=1),
                    1,
                    counts,
                    "signup" if kind == "auto" else "diagnostic",
                )
            )
            if kind == "auto":
                status = "failed" if counts["error"] else "sent"
                outbox_item(cust, status, 1, created_at, run_id)
        for n in range(20):  # a few signups waiting to be sent
            outbox_item(rng.choice(subscribers), "pending", 0, self.now - timedelta(minutes=n))
        self.outcomes.sort(key=lambda r: r[-1])  # rows arrive in time order in real life
        self.outcomes = [(i + 1, *r[1:]) for i, r in enumerate(self.outcomes)]

        # A subscriber with a long history, as the shop owner would type it.
        known = subscribers[per_export * (EXPORTS - 1) % len(subscribers)]
        self.known_email = "  " + self.customers[known][1].upper() + " "
        self.biggest_export = self.export_ids[-1]

    def _run(
        self,
        run_id: int,
        kind: str,
        created_at: datetime,
        finished: datetime,
        total: int,
        counts: dict[str, int],
        by: str,
    ) -> tuple[Any, ...]:
        return (
            run_id,
            kind,
            LIST_ID,
            "finished",
            by,
            total,
            counts["created"],
            counts["updated"],
            counts["skipped"],
            counts["error"],
            created_at,
            created_at,
            finished,
        )


RUN_COLUMNS = (
    "id",
    "kind",
    "list_id",
    "status",
    "started_by",
    "total",
    "created",
    "updated",
    "skipped",
    "errors",
    "created_at",
    "started_at",
    "finished_at",
)
OUTCOME_COLUMNS = (
    "id",
    "run_id",
    "batch_id",
    "email",
    "email_hash",
    "outcome",
    "permanent",
    "error_title",
    "error_detail",
    "mailchimp_status",
    "sent",
    "created_at",
)
OUTBOX_COLUMNS = (
    "id",
    "action",
    "email",
    "email_hash",
    "status",
    "attempts",
    "next_attempt_at",
    "run_id",
    "created_at",
)
CUSTOMER_COLUMNS = ("id", "email", "first_name", "last_name", "newsletter", "created_at")
# Columns of mcsync_runs that have no server default; filled with the model's defaults.
RUN_DEFAULTS = {
    "batch_size": 0,
    "status_if_new": "subscribed",
    "planning_done": True,
    "batch_count": 0,
    "excluded": 0,
    "invalid": 0,
    "duplicates": 0,
}
OUTBOX_DEFAULTS_AT = "updated_at"


def _sqlite_time(value: datetime) -> str:
    return value.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f")


def load_sqlite(engine: sa.Engine, year: Year) -> None:
    raw = engine.raw_connection()
    try:
        cur = raw.cursor()
        cur.execute("PRAGMA synchronous=OFF")
        cur.execute("PRAGMA journal_mode=WAL")

        def conv(row: tuple[Any, ...]) -> tuple[Any, ...]:
            return tuple(
                _sqlite_time(v)
                if isinstance(v, datetime)
                else (int(v) if isinstance(v, bool) else v)
                for v in row
            )

        _insert(cur, "shop_customers", CUSTOMER_COLUMNS, map(conv, year.customers), "?")
        extra = tuple(RUN_DEFAULTS)
        _insert(
            cur,
            "mcsync_runs",
            RUN_COLUMNS + extra,
            (
                conv(r) + tuple(int(v) if isinstance(v, bool) else v for v in RUN_DEFAULTS.values())
                for r in year.runs
            ),
            "?",
        )
        _insert(cur, "mcsync_outcomes", OUTCOME_COLUMNS, map(conv, year.outcomes), "?")
        _insert(
            cur,
            "mcsync_outbox",
            (*OUTBOX_COLUMNS, OUTBOX_DEFAULTS_AT),
            (conv((*r, r[-1])) for r in year.outbox),
            "?",
        )
        raw.commit()
        cur.execute("ANALYZE")
        raw.commit()
    finally:
        raw.close()


def _insert(cur: Any, table: str, columns: tuple[str, ...], rows: Any, mark: str) -> None:
    sql = f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join([mark] * len(columns))})"
    cur.executemany(sql, rows)


def load_postgres(engine: sa.Engine, year: Year) -> None:
    raw = engine.raw_connection()
    try:
        cur = raw.cursor()
        extra = tuple(RUN_DEFAULTS)
        _copy(cur, "shop_customers", CUSTOMER_COLUMNS, year.customers)
        _copy(
            cur,
            "mcsync_runs",
            RUN_COLUMNS + extra,
            (r + tuple(RUN_DEFAULTS.values()) for r in year.runs),
        )
        _copy(cur, "mcsync_outcomes", OUTCOME_COLUMNS, year.outcomes)
        _copy(
            cur,
            "mcsync_outbox",
            (*OUTBOX_COLUMNS, OUTBOX_DEFAULTS_AT),
            ((*r, r[-1]) for r in year.outbox),
        )
        for table in ("shop_customers", "mcsync_runs", "mcsync_outcomes", "mcsync_outbox"):
            cur.execute(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'),"
                f" (SELECT max(id) FROM {table}))"
            )
        raw.commit()
        raw.dbapi_connection.autocommit = True  # VACUUM cannot run in a transaction
        raw.cursor().execute("VACUUM ANALYZE")
        raw.dbapi_connection.autocommit = False
    finally:
        raw.close()


def _copy(cur: Any, table: str, columns: tuple[str, ...], rows: Any, chunk: int = 100_000) -> None:
    sql = f"COPY {table} ({', '.join(columns)}) FROM STDIN WITH (FORMAT csv)"
    buffer = io.StringIO()
    writer = csv.writer(buffer)

    def flush() -> None:
        buffer.seek(0)
        if hasattr(cur, "copy_expert"):  # psycopg2
            cur.copy_expert(sql, buffer)
        else:  # psycopg 3
            with cur.copy(sql) as copy:
                copy.write(buffer.getvalue())
        buffer.seek(0)
        buffer.truncate()

    for count, row in enumerate(rows, 1):
        writer.writerow(
            ["" if v is None else (v.isoformat() if isinstance(v, datetime) else v) for v in row]
        )
        if count % chunk == 0:
            flush()
    if buffer.tell():
        flush()


# --- measuring ---------------------------------------------------------------------------


@contextlib.contextmanager
def captured(engine: sa.Engine) -> Iterator[list[tuple[str, Any]]]:
    statements: list[tuple[str, Any]] = []

    def listen(
        conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool
    ) -> None:
        statements.append((statement, parameters))

    sa.event.listen(engine, "before_cursor_execute", listen)
    try:
        yield statements
    finally:
        sa.event.remove(engine, "before_cursor_execute", listen)


def median_ms(func: Callable[[], Any], session: Any, repeat: int) -> tuple[float, Any]:
    result = func()  # warm-up (and the result to report)
    session.rollback()
    session.expunge_all()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        func()
        times.append((time.perf_counter() - start) * 1000)
        session.rollback()
        session.expunge_all()
    return statistics.median(times), result


def explain(engine: sa.Engine, statement: str, parameters: Any) -> list[str]:
    raw = engine.raw_connection()
    try:
        cur = raw.cursor()
        if engine.dialect.name == "postgresql":
            cur.execute("EXPLAIN (ANALYZE, COSTS OFF, SUMMARY OFF) " + statement, parameters)
            lines = [row[0] for row in cur.fetchall()]
        else:
            cur.execute("EXPLAIN QUERY PLAN " + statement, parameters or ())
            rows = cur.fetchall()
            depth: dict[int, int] = {0: 0}
            lines = []
            for node, parent, _, detail in rows:
                depth[node] = depth.get(parent, 0) + 1
                lines.append("  " * (depth[node] - 1) + detail)
        raw.rollback()
        return lines
    finally:
        raw.close()


def scan_flags(lines: list[str]) -> list[str]:
    """Full scans worth a word: of mcsync_outcomes, of the outbox, of the host's customers."""
    flags = []
    for line in lines:
        text = line.strip()
        if "Seq Scan on mcsync_outcomes" in text:
            flags.append("SEQUENTIAL SCAN of mcsync_outcomes")
        elif text.startswith("SCAN mcsync_outcomes"):
            kind = "full index scan" if "INDEX" in text else "FULL TABLE SCAN"
            flags.append(f"{kind} of mcsync_outcomes ({text})")
        elif "Seq Scan on mcsync_outbox" in text or text == "SCAN mcsync_outbox":
            flags.append("full scan of mcsync_outbox (grows by one row per signup)")
        elif "Seq Scan on shop_customers" in text or (
            text.startswith("SCAN shop_customers") and "INDEX" not in text
        ):
            flags.append("full scan of the host's shop_customers")
    return flags


def short_sql(statement: str) -> str:
    one = " ".join(statement.split())
    return one if len(one) <= 150 else one[:147] + "..."


class Bench:
    def __init__(self, backend: str, app: Any, year: Year, repeat: int, plans: bool) -> None:
        from example_app.models import db
        from flask_mcsync import state

        self.backend = backend
        self.app = app
        self.db = db
        self.ext = state(app)
        self.engine = db.engine
        self.year = year
        self.repeat = repeat
        self.plans = plans
        self.rows: list[dict[str, Any]] = []
        self.flags: list[dict[str, Any]] = []

    def measure(self, name: str, func: Callable[[], Any], describe: Callable[[Any], str]) -> None:
        session = self.db.session
        with captured(self.engine) as statements:
            func()
        session.rollback()
        ms, result = median_ms(func, session, self.repeat)
        row = {
            "backend": self.backend,
            "what": name,
            "median_ms": round(ms, 2),
            "result": describe(result),
            "statements": len(statements),
            "flags": [],
        }
        if self.plans:
            print(f"\n--- [{self.backend}] {name}: {len(statements)} statement(s)")
        for statement, parameters in statements:
            lines = explain(self.engine, statement, parameters)
            flags = scan_flags(lines)
            row["flags"] += flags
            for flag in flags:
                self.flags.append(
                    {
                        "backend": self.backend,
                        "what": name,
                        "flag": flag,
                        "sql": short_sql(statement),
                    }
                )
            if self.plans:
                print(f"  SQL: {short_sql(statement)}")
                for line in lines:
                    print(f"      {line}")
                for flag in flags:
                    print(f"      !!! {flag}")
        self.rows.append(row)

    def run(self) -> None:
        from flask_mcsync import status
        from flask_mcsync.diagnostic import diagnose

        s = self.db.session
        y = self.year
        for days in (1, 7, 30, 365):
            self.measure(
                f"report(days={days})",
                lambda d=days: status.report(s, d),
                lambda r: (
                    f"{r['totals']['runs']} runs, {r['totals']['errors']} errors,"
                    f" {len(r['daily'])} days"
                ),
            )
        for days in (7, 30, 365):
            for kind in (None, "permanent", "retried"):
                self.measure(
                    f"errors(period={days}d, kind={kind})",
                    lambda d=days, k=kind: status.errors(s, period=status.Period.last(d), kind=k),
                    lambda r: f"{len(r)} rows (limit 200)",
                )
        self.measure(
            "errors(run_id=export)",
            lambda: status.errors(s, run_id=y.biggest_export),
            lambda r: f"{len(r)} rows (limit 200)",
        )
        self.measure(
            "errors(run_id=export, limit=None)",
            lambda: status.errors(s, run_id=y.biggest_export, limit=None),
            lambda r: f"{len(r)} rows",
        )
        self.measure(
            "error_titles(run_id=export)",
            lambda: status.error_titles(s, y.biggest_export),
            lambda r: f"{len(r)} titles",
        )
        for days in (30, 365):
            self.measure(
                f"errors CSV ({days}d, all rows)",
                lambda d=days: "".join(
                    status.errors_csv(status.errors(s, period=status.Period.last(d), limit=None))
                ),
                lambda r: f"{r.count(chr(10)) - 1} lines, {len(r) // 1024} KiB",
            )
        self.diagnostic(diagnose)

    def diagnostic(self, diagnose: Callable[..., Any]) -> None:
        email = self.year.known_email

        def describe(answer: dict[str, Any]) -> str:
            return (
                f"{len(answer['in_shop'])} shop row(s), {len(answer['history'])} history"
                f" rows, eligible={answer['eligible']}"
            )

        # The shop's plain index first, then each index a host could add: they add up, as
        # they would in a shop that tried one and then the other.
        steps = [
            ("index on email only", None),
            ("+ index lower(email)", ("ix_bench_customers_lower_email", "lower(email)")),
            (
                "+ index lower(trim(email))",
                ("ix_bench_customers_lower_trim_email", "lower(trim(email))"),
            ),
        ]
        for label, index in steps:
            if index is not None:
                name, expression = index
                with self.engine.begin() as conn:
                    conn.exec_driver_sql(f"CREATE INDEX {name} ON shop_customers ({expression})")
                    conn.exec_driver_sql("ANALYZE shop_customers")
            self.measure(
                f"diagnose(known, live=False), {label}",
                lambda: diagnose(self.ext, email, live=False),
                describe,
            )


def bench_backend(backend: str, url: str, args: argparse.Namespace, year: Year) -> dict[str, Any]:
    from example_app.models import db

    app = make_app(url)
    with app.app_context():
        started = time.perf_counter()
        (load_postgres if backend == "postgresql" else load_sqlite)(db.engine, year)
        load_s = time.perf_counter() - started
        sanity(db)
        print(
            f"[{backend}] loaded {len(year.outcomes):,} outcomes, {len(year.runs):,} runs,"
            f" {len(year.customers):,} customers in {load_s:.1f}s",
            flush=True,
        )
        bench = Bench(backend, app, year, args.repeat, not args.quiet_plans)
        bench.run()
        db.session.remove()
        db.engine.dispose()
    return {
        "backend": backend,
        "load_seconds": round(load_s, 1),
        "rows": bench.rows,
        "flags": bench.flags,
    }


def sanity(db: Any) -> None:
    """The loaded rows read back through the models as the extension writes them."""
    from flask_mcsync import status
    from flask_mcsync.models import Outcome

    s = db.session
    n_errors = s.execute(
        sa.select(sa.func.count()).select_from(Outcome).where(Outcome.outcome == "error")
    ).scalar_one()
    year_errors = len(status.errors(s, period=status.Period.last(365), limit=None))
    totals = status.totals(s, status.Period.last(365))
    assert year_errors == n_errors, (year_errors, n_errors)
    assert totals["errors"] == n_errors, totals
    s.rollback()


def print_table(results: list[dict[str, Any]]) -> None:
    names = [r["what"] for r in results[0]["rows"]]
    backends = [r["backend"] for r in results]
    by = {(r["backend"], row["what"]): row for r in results for row in r["rows"]}
    width = max(len(n) for n in names)
    print("\nMedian time per call (ms)")
    print(f"{'':<{width}}  " + "  ".join(f"{b:>10}" for b in backends) + "  result")
    for name in names:
        cells = [by.get((b, name)) for b in backends]
        times = "  ".join(f"{c['median_ms']:>10.2f}" if c else f"{'-':>10}" for c in cells)
        result = next(c["result"] for c in cells if c)
        marks = " [!]" if any(c and c["flags"] for c in cells) else ""
        print(f"{name:<{width}}  {times}  {result}{marks}")
    for r in results:
        print(f"\n[{r['backend']}] load (bulk insert + ANALYZE): {r['load_seconds']}s")
        if not r["flags"]:
            print(f"[{r['backend']}] no full scan of mcsync_outcomes, outbox or customers")
        seen = set()
        for flag in r["flags"]:
            key = (flag["what"], flag["flag"])
            if key not in seen:
                seen.add(key)
                print(f"[{r['backend']}] {flag['what']}: {flag['flag']}\n    {flag['sql']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--outcomes", type=int, default=1_000_000)
    parser.add_argument("--errors", type=int, default=10_000)
    parser.add_argument("--customers", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=7, help="timed calls per figure")
    parser.add_argument("--json", help="also write the figures to this file")
    parser.add_argument("--quiet-plans", action="store_true", help="only the flags, no plans")
    args = parser.parse_args()
    names = backends(parser, args.backends)

    started = time.perf_counter()
    year = Year(args.outcomes, args.errors, args.customers)
    # Millions of generated tuples stay in memory: keep them out of the garbage collector's
    # full passes, or those passes (not the queries) dominate the timings.
    gc.collect()
    gc.freeze()
    print(f"generated the year in {time.perf_counter() - started:.1f}s", flush=True)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for backend in names:
            url = database_url(backend, Path(tmp) / "bench_dashboard.db", DEFAULT_PG_URL)
            results.append(bench_backend(backend, url, args, year))
    print_table(results)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
