"""Benchmark of reconcile: Mailchimp's changes read back into the shop.

For each database backend and audience size N it

1. makes a fresh database with N opted-in customers and seeds the sandbox (in its own
   process) with the same N members, about 3% of them unsubscribed, 1% cleaned and
   0.5% archived (people who left in Mailchimp while the shop still says subscriber);
2. runs ``flask mcsync reconcile --json`` in a child process three times:
   *first* (no reconcile before: the whole audience is read, and the leavers are applied
   to the shop through the example shop's hook), *again* right after (nothing changed),
   and *changes* after 1,000 members were unsubscribed in Mailchimp meanwhile;
3. prints per run: wall time of the command, the reconcile's own time, members read,
   changes applied, API requests (the sandbox's count), peak RSS of the child process
   (its own ``RUSAGE_SELF`` high-water mark), and the load average;
4. checks: the first reconcile read N members and applied as many changes as there are
   leavers; the second applied none; the third applied 1,000; the shop's opted-out
   customers equal the leavers.

    python benchmarks/bench_reconcile.py [--addresses 20000,100000]
        [--backends sqlite,postgresql] [--json out.json]

PostgreSQL: ``MCSYNC_BENCH_DATABASE_URL`` (default
``postgresql://postgres@127.0.0.1:5432/mcsync_bench_reconcile``; its ``public`` schema is
WIPED). Redis: ``MCSYNC_BENCH_REDIS_URL`` (default ``redis://127.0.0.1:6379/12``, wiped).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from common import (
    address,
    backends,
    fresh_start,
    mcsync_config,
    note,
    sandbox_process,
    shop_app,
    worker_env,
)

from example_app.commands import DOMAINS, FIRST, LAST
from flask_mcsync.sandbox import DEFAULT_LIST_ID as LIST_ID

DEFAULT_PG_URL = "postgresql://postgres@127.0.0.1:5432/mcsync_bench_reconcile"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/12"
CHANGES = 1000
# ``flask mcsync reconcile --json``, then the process's own peak RSS (KiB) on stderr.
CHILD = (
    "import resource, sys\n"
    "from flask.cli import main\n"
    "sys.argv = ['flask', '--app', 'example_app', 'mcsync', 'reconcile', '--json']\n"
    "try:\n"
    "    main()\n"
    "finally:\n"
    "    print('peak_rss_kib', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,"
    " file=sys.stderr)\n"
)


def status_of(i: int) -> str:
    if i % 200 == 7:
        return "archived"
    if i % 100 == 3:
        return "cleaned"
    if i % 100 in (11, 41, 71):
        return "unsubscribed"
    return "subscribed"


def rows(count: int) -> list[tuple[str, str, str, str]]:
    out = []
    for i in range(count):
        first, last = FIRST[i % len(FIRST)], LAST[(i // len(FIRST)) % len(LAST)]
        out.append((address(first, last, i, DOMAINS[i % len(DOMAINS)]), first, last, status_of(i)))
    return out


def seed(app: Any, sandbox: Any, people: list[tuple[str, str, str, str]]) -> None:
    from example_app.models import Customer, db
    from flask_mcsync import settings, state

    with app.app_context():
        for start in range(0, len(people), 10_000):
            chunk = people[start : start + 10_000]
            db.session.execute(
                sa.insert(Customer),
                [
                    {"email": e, "first_name": f, "last_name": la, "newsletter": True}
                    for e, f, la, _ in chunk
                ],
            )
        db.session.commit()
        ext = state()
        settings.update(ext.session, ext.config, list_id=LIST_ID)
    # An audience built over time: member i last changed (N - i) minutes ago, so the
    # audience does not all share the seed's second (which reconcile reads again).
    now = datetime.now(timezone.utc).replace(microsecond=0)
    for start in range(0, len(people), 5_000):
        sandbox.seed_members(
            LIST_ID,
            [
                {
                    "email_address": e,
                    "status": s,
                    "merge_fields": {"FNAME": f, "LNAME": la},
                    "last_changed": (now - timedelta(minutes=len(people) - i)).isoformat(),
                }
                for i, (e, f, la, s) in enumerate(people[start : start + 5_000], start)
            ],
        )


def reconcile_once(env: dict[str, str], sandbox: Any) -> dict[str, Any]:
    """``flask mcsync reconcile --json`` in a child; its figures, peak RSS and load."""
    sandbox.reset_stats()
    load_before = os.getloadavg()
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", CHILD],
        env=env,
        cwd=Path(__file__).resolve().parent.parent,
        capture_output=True,
        text=True,
        check=False,
    )
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise RuntimeError(f"reconcile failed: {proc.stdout}\n{proc.stderr}")
    peak_kib = int(proc.stderr.strip().splitlines()[-1].split()[-1])
    result = json.loads(proc.stdout)
    stats = sandbox.stats()
    return {
        "wall_s": round(wall, 2),
        "reconcile_s": result["seconds"],
        "read": result["read"],
        "applied": result["applied"],
        "requests": stats["requests_total"],
        "peak_rss_mib": round(peak_kib / 1024, 1),
        "load_before": [round(x, 2) for x in load_before],
        "load_after": [round(x, 2) for x in os.getloadavg()],
    }


def opted_out(app: Any) -> int:
    from example_app.models import Customer, db

    with app.app_context():
        count = db.session.execute(
            sa.select(sa.func.count()).select_from(Customer).where(Customer.newsletter.is_(False))
        ).scalar_one()
        db.session.remove()
        db.engine.dispose()
    return int(count)


def run(backend: str, count: int, sandbox: Any, redis_url: str, tmp: Path) -> dict[str, Any]:
    url = fresh_start(backend, tmp / f"shop-{count}.db", DEFAULT_PG_URL, sandbox, redis_url)
    config = mcsync_config(sandbox, redis_url)
    app = shop_app(url, **config)
    people = rows(count)
    leavers = sum(1 for p in people if p[3] != "subscribed")
    note(f"{backend} {count:,}: seeding shop and sandbox")
    seed(app, sandbox, people)
    env = worker_env(config, url)
    note(f"{backend} {count:,}: first reconcile")
    first = reconcile_once(env, sandbox)
    note(f"{backend} {count:,}: again, nothing changed")
    again = reconcile_once(env, sandbox)
    changed = [p[0] for p in people if p[3] == "subscribed"][:CHANGES]
    for email in changed:
        sandbox.unsubscribe(LIST_ID, email)
    time.sleep(2)
    note(f"{backend} {count:,}: after {CHANGES} unsubscribes in Mailchimp")
    after = reconcile_once(env, sandbox)
    checks = {
        "first_read_all": first["read"] == count,
        "first_applied_leavers": first["applied"] == leavers,
        "again_applied_none": again["applied"] == 0,
        "changes_applied": after["applied"] == len(changed),
        "shop_opted_out": opted_out(app) == leavers + len(changed),
    }
    return {
        "backend": backend,
        "members": count,
        "leavers": leavers,
        "first": first,
        "again": again,
        "changes": after,
        "checks": checks,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--addresses", default="20000,100000")
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--json", dest="json_path")
    args = parser.parse_args()
    sizes = [int(x) for x in args.addresses.split(",") if x.strip()]
    redis_url = os.environ.get("MCSYNC_BENCH_REDIS_URL", DEFAULT_REDIS_URL)
    results = []
    with sandbox_process() as sandbox, tempfile.TemporaryDirectory() as tmp:
        for backend in backends(parser, args.backends):
            for size in sizes:
                results.append(run(backend, size, sandbox, redis_url, Path(tmp)))
                print(json.dumps(results[-1]), flush=True)
    print(
        f"{'backend':<11}{'members':>9}  {'run':<8}{'wall s':>8}{'own s':>8}{'read':>9}"
        f"{'applied':>9}{'requests':>9}{'peak MiB':>10}  load after"
    )
    for r in results:
        for name in ("first", "again", "changes"):
            f = r[name]
            print(
                f"{r['backend']:<11}{r['members']:>9,}  {name:<8}{f['wall_s']:>8}"
                f"{f['reconcile_s']:>8}{f['read']:>9,}{f['applied']:>9,}{f['requests']!s:>9}"
                f"{f['peak_rss_mib']:>10}  {f['load_after']}"
            )
    ok = all(all(r["checks"].values()) for r in results)
    for r in results:
        if not all(r["checks"].values()):
            print(f"CHECK FAILED {r['backend']} {r['members']}: {r['checks']}")
    if args.json_path:
        Path(args.json_path).write_text(json.dumps(results, indent=2))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
