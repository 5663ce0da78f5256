"""``flask mcsync ...``: every admin action from the command line.

Each command calls the same functions as the admin pages; ``--json`` prints what a
script would read. Errors a user can meet end in a sentence saying what to do, and a
non-zero exit status.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from typing import Any, TypeVar

import click
from flask import current_app
from flask.cli import AppGroup

from . import exclusions, settings
from .config import ConfigError
from .eligibility import tally
from .extension import McSync, state
from .gateway import MailchimpError
from .migrations import upgrade
from .rules import InvalidRule
from .runs import ExportError, progress, start_export
from .status import InvalidPeriod

mcsync_cli = AppGroup("mcsync", help="Keep the shop's addresses in a Mailchimp audience.")

F = TypeVar("F", bound=Callable[..., Any])


def _friendly(func: F) -> F:
    """Turn the errors a user can meet into a message and exit status 1, not a traceback."""
    import functools

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except (
            ConfigError,
            ExportError,
            InvalidRule,
            settings.InvalidSetting,
            InvalidPeriod,
        ) as exc:
            raise click.ClickException(str(exc)) from None
        except MailchimpError as exc:
            raise click.ClickException(f"Mailchimp said: {exc.title}. {exc.full_detail}") from None

    return wrapper  # type: ignore[return-value]


def _emit(data: Any, as_json: bool, text: Callable[[], None]) -> None:
    if as_json:
        click.echo(json.dumps(data, indent=2, default=str))
    else:
        text()


@mcsync_cli.command("init-db")
@_friendly
def init_db() -> None:
    """Create or upgrade the mcsync_* tables in the app's database."""
    done = upgrade(state().db.engine)
    click.echo("\n".join(done) if done else "The mcsync tables are up to date.")


@mcsync_cli.command("ping")
@_friendly
def ping() -> None:
    """Check that the Mailchimp API answers with the configured key."""
    ext = state()
    answer = ext.gateway().ping()
    click.echo(f"{answer.get('health_status', answer)} ({ext.config.api_url})")


@mcsync_cli.command("lists")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@_friendly
def lists(as_json: bool) -> None:
    """List the account's audiences (the targets an export can have)."""
    ext = state()
    audiences = ext.gateway().audiences()
    chosen = settings.load(ext.session, ext.config).list_id

    def text() -> None:
        if not audiences:
            click.echo("The account has no audience: create one in Mailchimp first.")
        for a in audiences:
            mark = "*" if a["id"] == chosen else " "
            click.echo(f"{mark} {a['id']}  {a['name']}  ({a['member_count']} members)")

    _emit(audiences, as_json, text)


@mcsync_cli.command("settings")
@click.option("--list", "list_id", help="Target audience id (see 'flask mcsync lists').")
@click.option("--double-optin/--no-double-optin", default=None, help="New contacts pending.")
@click.option("--batch-size", type=int, help="Addresses per batch.")
@click.option("--auto-sync/--no-auto-sync", default=None, help="Sync new subscribers.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@_friendly
def settings_cmd(
    list_id: str | None,
    double_optin: bool | None,
    batch_size: int | None,
    auto_sync: bool | None,
    as_json: bool,
) -> None:
    """Show the settings, or change the ones given."""
    ext = state()
    session = ext.session
    if any(v is not None for v in (list_id, double_optin, batch_size, auto_sync)):
        name = None
        if list_id:
            name = _audience_name(ext, list_id)
        current = settings.update(
            session,
            ext.config,
            list_id=list_id,
            list_name=name,
            double_optin=double_optin,
            batch_size=batch_size,
            auto_sync=auto_sync,
        )
    else:
        current = settings.load(session, ext.config)
    data = {
        "list_id": current.list_id,
        "list_name": current.list_name,
        "double_optin": current.double_optin,
        "batch_size": current.batch_size,
        "auto_sync": current.auto_sync,
        "first_export_done": current.first_export_done,
        "api_key": ext.config.masked_api_key,
        "api_url": ext.config.api_url,
    }

    def text() -> None:
        for key, value in data.items():
            click.echo(f"{key}: {value}")

    _emit(data, as_json, text)


def _audience_name(ext: McSync, list_id: str) -> str:
    for audience in ext.gateway().audiences():
        if audience["id"] == list_id:
            return str(audience["name"])
    raise ExportError(
        f"The account has no audience {list_id!r}: run 'flask mcsync lists' to see its ids."
    )


@mcsync_cli.group("rules")
def rules_cli() -> None:
    """Exclusion rules: addresses that never reach Mailchimp."""


@rules_cli.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@_friendly
def rules_list(as_json: bool) -> None:
    """List the exclusion rules with how many of the shop's addresses each excludes."""
    ext = state()
    session = ext.session
    ruleset = exclusions.load_ruleset(session)
    counts = tally(session, ext.require_source(), ruleset).by_rule if ruleset else {}
    data = [
        {"id": r.id, "kind": r.kind.value, "value": r.value, "excludes": counts.get(r.id, 0)}
        for r in ruleset.rules
    ]

    def text() -> None:
        if not data:
            click.echo("No exclusion rules.")
        for r in data:
            click.echo(f"{r['id']:>4}  {r['kind']:<8} {r['value']}  ({r['excludes']} addresses)")

    _emit(data, as_json, text)


@rules_cli.command("add")
@click.argument("kind", type=click.Choice(["address", "domain", "pattern"]))
@click.argument("value")
@_friendly
def rules_add(kind: str, value: str) -> None:
    """Add a rule: KIND is address, domain or pattern (shell-style, like '*@mailinator.com')."""
    rule = exclusions.add_rule(state().session, kind, value)
    click.echo(f"Added rule {rule.id}: {rule.describe()}.")


@rules_cli.command("remove")
@click.argument("rule_id", type=int)
@_friendly
def rules_remove(rule_id: int) -> None:
    """Remove the rule with this id (see 'flask mcsync rules list')."""
    if not exclusions.remove_rule(state().session, rule_id):
        raise click.ClickException(f"There is no rule {rule_id}: see 'flask mcsync rules list'.")
    click.echo(f"Removed rule {rule_id}.")


@mcsync_cli.command("preview")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@_friendly
def preview(as_json: bool) -> None:
    """How many addresses an export would send, exclude and skip as invalid."""
    ext = state()
    session = ext.session
    data = tally(session, ext.require_source(), exclusions.load_ruleset(session)).as_dict()
    _emit(
        data,
        as_json,
        lambda: click.echo(
            f"{data['to_export']} to export; {data['excluded']} excluded, {data['invalid']}"
            f" invalid, {data['duplicates']} duplicates (of {data['rows']} subscribers)."
        ),
    )


@mcsync_cli.command("export")
@click.option("--list", "list_id", help="Target audience (default: the one in settings).")
@click.option("--batch-size", type=int, help="Addresses per batch (default: settings).")
@click.option("--wait", is_flag=True, help="Follow the run with a progress bar until it ends.")
@click.option("--json", "as_json", is_flag=True, help="Print the run (at the end with --wait).")
@_friendly
def export(list_id: str | None, batch_size: int | None, wait: bool, as_json: bool) -> None:
    """Start a manual export in the workers (or join the one already running)."""
    ext = state()
    started = start_export(ext, "cli", list_id=list_id, batch_size=batch_size)
    run_id = started.run.id
    if not as_json:
        verb = "Started" if started.created else "Joined the running"
        click.echo(f"{verb} export run {run_id} to audience {started.run.list_id}.")
    if not wait:
        if as_json:
            click.echo(json.dumps(progress(ext.session, run_id), default=str))
        else:
            click.echo("Workers do the work: start one with 'flask mcsync worker'.")
        return
    final = follow(ext, run_id, quiet=as_json)
    if as_json:
        click.echo(json.dumps(final, indent=2, default=str))
    else:
        click.echo(summary_line(final))
    if final["status"] != "finished":
        sys.exit(1)


def follow(ext: McSync, run_id: int, quiet: bool = False, interval: float = 0.5) -> dict[str, Any]:
    """Print a progress bar until the run ends; return its final progress."""
    session = ext.session
    last_change = time.monotonic()
    seen: tuple[Any, ...] = ()
    while True:
        data = progress(session, run_id)
        session.commit()  # end the read transaction so the next poll sees new rows
        assert data is not None
        if not quiet:
            click.echo("\r" + bar_line(data), nl=False, err=True)
        if data["ended"]:
            if not quiet:
                click.echo("", err=True)
            return data
        marker = (data["done"], data["total"], tuple(data["batch_counts"].values()))
        if marker != seen:
            seen, last_change = marker, time.monotonic()
        elif time.monotonic() - last_change > 120 and not quiet:
            click.echo(
                "\nNothing has moved for 2 minutes: is a worker running? Start one with"
                " 'flask mcsync worker'.",
                err=True,
            )
            last_change = time.monotonic()
        time.sleep(interval)


def bar_line(data: dict[str, Any], width: int = 30) -> str:
    filled = int(width * data["percent"] / 100)
    counts = data["batch_counts"]
    done = counts["done"] + counts["failed"]
    eta = f" ETA {data['seconds_left']}s" if data["seconds_left"] else ""
    planning = "" if data["planning_done"] else " (reading the shop...)"
    return (
        f"[{'#' * filled}{'.' * (width - filled)}] {data['percent']:5.1f}%"
        f"  {data['done']}/{data['total']} addresses  batches {done}/{data['batch_count']}"
        f"  {data['rate']:.0f}/s{eta}{planning}   "
    )


def summary_line(data: dict[str, Any]) -> str:
    line = (
        f"Run {data['id']} {data['status']} in {data['elapsed']:.1f}s: exported"
        f" {data['created'] + data['updated']} ({data['created']} created,"
        f" {data['updated']} updated), excluded {data['excluded']}, invalid"
        f" {data['invalid']}, duplicates {data['duplicates']}, errors {data['errors']}."
    )
    if data.get("retries"):
        line += (
            f"\nPassing failures: {data['retries']} failed tries (at most"
            f" {data['most_retries']} for one batch), {data['retry_seconds']:.0f}s of backoff."
        )
    if data.get("message"):
        line += f"\n{data['message']}"
    return line


@mcsync_cli.command("worker")
@click.option("--burst", is_flag=True, help="Stop when the queue is empty.")
@_friendly
def worker(burst: bool) -> None:
    """Run an RQ worker for the sync jobs (inside this app's context)."""
    from .worker import run_worker

    run_worker(current_app._get_current_object(), burst=burst)  # type: ignore[attr-defined]


@mcsync_cli.command("sweep")
@_friendly
def sweep_cmd() -> None:
    """Queue again any run or batch whose worker died (the workers also do this on their own)."""
    from .jobs import sweep_once

    counts = sweep_once(state())
    click.echo(
        f"Re-queued {counts['plans']} planning job(s) and {counts['batches']} batch(es);"
        f" closed {counts['runs_closed']} finished run(s)."
    )


@mcsync_cli.command("flush")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@_friendly
def flush(as_json: bool) -> None:
    """Send the auto-sync rows that are waiting (e.g. after Redis was down), right here."""
    from .outbox import due_items, waiting_count
    from .single_sync import send_outbox_item

    ext = state()
    results: dict[str, int] = {}
    while ids := due_items(ext.session):
        for item_id in ids:
            outcome = send_outbox_item(ext, item_id)
            results[outcome] = results.get(outcome, 0) + 1
        if results.get("retry", 0) + results.get("busy", 0) >= len(ids):
            break  # what is left is held by a worker or waits for a later try
    data = {
        "handled": sum(results.values()),
        **results,
        "still_waiting": waiting_count(ext.session),
    }

    def text() -> None:
        click.echo(
            f"Sent {results.get('sent', 0)} waiting row(s); skipped {results.get('skipped', 0)},"
            f" failed {results.get('failed', 0)}, ignored {results.get('ignored', 0)},"
            f" to retry later {results.get('retry', 0)}; {data['still_waiting']} still waiting."
        )

    _emit(data, as_json, text)


@mcsync_cli.command("status")
@click.option("--days", default=7, show_default=True, help="Period to report, 1 to 365 days.")
@click.option("--page", default=1, show_default=True, help="Page of the run list.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@_friendly
def status_cmd(days: int, page: int, as_json: bool) -> None:
    """Every sync of the last DAYS days (manual runs, auto-syncs, re-syncs) and its errors."""
    from .status import report

    data = report(state().session, days, page)

    def text() -> None:
        t = data["totals"]
        click.echo(
            f"Last {data['days']} day(s): {t['runs']} sync(s); {t['created']} created,"
            f" {t['updated']} updated, {t['skipped']} skipped, {t['errors']} errors."
        )
        for r in data["runs"]:
            took = f"{r['duration']}s" if r["duration"] is not None else "-"
            click.echo(
                f"  #{r['id']:<6} {r['created_at'][:19]}  {r['kind']:<7} {r['status']:<9}"
                f" {took:>8}  created {r['created']}, updated {r['updated']}, skipped"
                f" {r['skipped']}, errors {r['errors']}  ({r['started_by']})"
            )
            if r["message"]:
                click.echo(f"          {r['message']}")
        click.echo(f"Page {data['page']} of {data['pages']}.")
        if data["waiting"]["count"]:
            click.echo(f"{data['waiting']['count']} auto-sync row(s) waiting to be sent.")

    _emit(data, as_json, text)


@mcsync_cli.command("errors")
@click.option("--days", default=7, show_default=True, help="Period, 1 to 365 days.")
@click.option("--run", "run_id", type=int, help="Only this run's errors.")
@click.option("--kind", type=click.Choice(["permanent", "retried"]), help="Filter by kind.")
@click.option("--csv", "as_csv", is_flag=True, help="Print CSV.")
@_friendly
def errors_cmd(days: int, run_id: int | None, kind: str | None, as_csv: bool) -> None:
    """Error outcomes with Mailchimp's title and detail."""
    from .status import Period, check_days, errors, errors_csv

    period = None if run_id else Period.last(check_days(days))
    rows = errors(state().session, run_id=run_id, period=period, kind=kind, limit=None)
    if as_csv:
        for chunk in errors_csv(rows):
            click.echo(chunk, nl=False)
        return
    for row in rows:
        mark = "permanent" if row["permanent"] else "gave up "
        click.echo(f"{row['at'][:19]}  run {row['run_id']}  {mark}  {row['email']}")
        click.echo(f"    {row['title']}: {row['detail']}")
    click.echo(f"{len(rows)} error(s).")


@mcsync_cli.command("diagnose")
@click.argument("email")
@click.option("--resync", is_flag=True, help="Re-synchronize it and wait for the outcome.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@_friendly
def diagnose_cmd(email: str, resync: bool, as_json: bool) -> None:
    """What we know about one address, what Mailchimp holds now, and a re-sync."""
    from .diagnostic import diagnose, start_resync
    from .status import run_summary

    ext = state()
    resynced = None
    if resync:
        run = start_resync(ext, email, started_by="cli")
        resynced = _wait_single(ext, run.id)
    data = diagnose(ext, email)
    if resynced is not None:
        data["resync"] = run_summary(resynced)

    def text() -> None:
        click.echo(f"Address: {data['email']!r} (identity {data['normalized']})")
        click.echo("  valid" if data["valid"] else f"  INVALID: {data['invalid_reason']}")
        click.echo(
            f"  excluded by the {data['excluded_by']}" if data["excluded"] else "  not excluded"
        )
        if not data["in_shop"]:
            click.echo("  not in the shop's subscriber source")
        for row in data["in_shop"]:
            role = "subscriber" if row["subscriber"] else "not a subscriber"
            click.echo(f"  in the shop: row {row['id']} {row['email']!r}, {role}")
        click.echo(f"  eligible for sync: {'yes' if data['eligible'] else 'no'}")
        mc = data["mailchimp"]
        if data["mailchimp_error"]:
            click.echo(f"  Mailchimp: {data['mailchimp_error']}")
        elif mc and mc["in_audience"]:
            click.echo(
                f"  Mailchimp: {mc['status']}, merge fields {mc['merge_fields']},"
                f" last changed {mc['last_changed']}"
            )
        elif mc:
            click.echo("  Mailchimp: not in the audience")
        for h in data["history"]:
            extra = f" - {h['title']}: {h['detail']}" if h["title"] else ""
            click.echo(f"  {h['at'][:19]}  {h['run_kind']:<7} {h['outcome']}{extra}")
        if resynced is not None:
            click.echo(f"Re-sync: run {resynced.id} {resynced.status}. {resynced.message or ''}")

    _emit(data, as_json, text)


def _wait_single(ext: McSync, run_id: int, timeout: float = 120) -> Any:
    from .models import Run

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ext.session.expire_all()
        run = ext.session.get(Run, run_id)
        if run is not None and run.status in ("finished", "failed"):
            return run
        time.sleep(0.3)
    raise click.ClickException(
        f"Re-sync run {run_id} did not end within {timeout:g}s: is a worker running?"
        " Start one with 'flask mcsync worker'."
    )


@mcsync_cli.command("sandbox")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8025, show_default=True, help="Port to listen on.")
def sandbox(host: str, port: int) -> None:
    """Serve the local Mailchimp API stand-in (for development and demos)."""
    from .sandbox import serve

    serve(host, port)
