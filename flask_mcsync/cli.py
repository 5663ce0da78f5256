"""``flask mcsync ...``: every admin action from the command line.

Each command calls the same functions as the admin pages; ``--json`` prints what a
script would read. Errors a user can meet end in a sentence saying what to do, and a
non-zero exit status.
"""

from __future__ import annotations

import sys
import time
from typing import Any

import click
from flask import current_app
from flask.cli import AppGroup

from . import exclusions, settings
from .app_state import McSync, state
from .cli_both_ways import both_ways_cli
from .cli_output import echo_json, emit, friendly, say_csv
from .diagnostic import diagnose, start_resync
from .eligibility import tally
from .follow import follow, summary_line
from .gateway import gateway_for
from .inputs import RowIdParam, TextParam
from .migrations import upgrade
from .models import Run
from .outbox import flush as flush_outbox
from .outcomes import LABELS, REASON_LABELS, run_label
from .preflight import preview as preflight
from .runs import ExportError, progress, start_export
from .status import (
    CSV_OUTCOMES,
    Period,
    check_days,
    errors,
    errors_csv,
    report,
    run_summary,
)
from .statuses import RUN_ENDED, Result, RunStatus
from .sweep import sweep_once
from .terminal import count, inert, say, when
from .worker import run_worker

mcsync_cli = AppGroup("mcsync", help="Keep the shop's addresses in a Mailchimp audience.")

AUDIENCE_ID = TextParam("audience id")


@mcsync_cli.command("init-db")
@friendly
def init_db() -> None:
    """Create or upgrade the mcsync_* tables in the app's database."""
    done = upgrade(state().db.engine)
    click.echo("\n".join(done) if done else "The mcsync tables are up to date.")


@mcsync_cli.command("ping")
@friendly
def ping() -> None:
    """Check that the Mailchimp API answers with the configured key."""
    ext = state()
    answer = gateway_for(ext).ping()
    say(f"{inert(answer.get('health_status', answer))} ({inert(ext.config.api_url)})")


@mcsync_cli.command("lists")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@friendly
def lists(as_json: bool) -> None:
    """List the account's audiences (the targets an export can have)."""
    ext = state()
    audiences = gateway_for(ext).audiences()
    chosen = settings.load(ext.session, ext.config).list_id

    def text() -> None:
        if not audiences:
            say("The account has no audience: create one in Mailchimp first.")
        for a in audiences:
            mark = "*" if a["id"] == chosen else " "
            members = count(a["member_count"], "member")
            say(f"{mark} {inert(a['id'])}  {inert(a['name'])}  ({members})")

    emit(audiences, as_json, text)


@mcsync_cli.command("settings")
@click.option(
    "--list", "list_id", type=AUDIENCE_ID, help="Target audience id (see 'flask mcsync lists')."
)
@click.option("--double-optin/--no-double-optin", default=None, help="New contacts pending.")
@click.option("--batch-size", type=int, help="Addresses per batch.")
@click.option("--auto-sync/--no-auto-sync", default=None, help="Sync new subscribers.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@friendly
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
    if list_id is not None and not list_id.strip():
        raise click.ClickException(
            "--list needs an audience id (see 'flask mcsync lists'): an empty one would"
            " clear the target audience and stop auto-sync. Nothing was changed."
        )
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
            say(f"{key}: {inert(value)}")

    emit(data, as_json, text)


def _audience_name(ext: McSync, list_id: str) -> str:
    for audience in gateway_for(ext).audiences():
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
@friendly
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
            say("No exclusion rules.")
        for r in data:
            excludes = count(int(r["excludes"] or 0), "address", "addresses")
            say(f"{r['id']:>4}  {r['kind']:<8} {inert(r['value'])}  ({excludes})")

    emit(data, as_json, text)


@rules_cli.command("add")
@click.argument("kind", type=click.Choice(["address", "domain", "pattern"]))
@click.argument("value", type=TextParam("rule value"))
@click.option("--confirm", is_flag=True, help="Add a pattern even if it matches every address.")
@friendly
def rules_add(kind: str, value: str, confirm: bool) -> None:
    """Add a rule: KIND is address, domain or pattern (shell-style, like '*@mailinator.com')."""
    rule = exclusions.add_rule(state().session, kind, value, allow_catch_all=confirm)
    say(f"Added rule {rule.id}: {inert(rule.describe())}.")


@rules_cli.command("remove")
@click.argument("rule_id", type=RowIdParam("rule number"))
@friendly
def rules_remove(rule_id: int) -> None:
    """Remove the rule with this id (see 'flask mcsync rules list')."""
    if not exclusions.remove_rule(state().session, rule_id):
        raise click.ClickException(f"There is no rule {rule_id}: see 'flask mcsync rules list'.")
    say(f"Removed rule {rule_id}.")


@mcsync_cli.command("preview")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@friendly
def preview(as_json: bool) -> None:
    """What an export would send, exclude and skip, and the required merge field check."""

    ext = state()
    answer = preflight(ext, settings.load(ext.session, ext.config).list_id)
    data = {**answer["counts"], "merge_fields": answer["merge_fields"]}

    def text() -> None:
        say(
            f"{data['to_export']} to export; {data['excluded']} excluded, {data['invalid']}"
            f" invalid, {data['duplicates']} duplicates (of {data['rows']} subscribers)."
        )
        if data["merge_fields"]["message"]:
            say(inert(data["merge_fields"]["message"]))

    emit(data, as_json, text)


@mcsync_cli.command("export")
@click.option(
    "--list", "list_id", type=AUDIENCE_ID, help="Target audience (default: the one in settings)."
)
@click.option("--batch-size", type=int, help="Addresses per batch (default: settings).")
@click.option("--wait", is_flag=True, help="Follow the run with a progress bar until it ends.")
@click.option(
    "--skip-merge-validation",
    is_flag=True,
    help="Send even though the shop does not fill required merge fields (Mailchimp then"
    " accepts members without them).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the run (at the end with --wait).")
@friendly
def export(
    list_id: str | None,
    batch_size: int | None,
    wait: bool,
    skip_merge_validation: bool,
    as_json: bool,
) -> None:
    """Start a manual export in the workers (or join the one already running)."""
    ext = state()
    note = _target_note(ext, list_id)
    started = start_export(
        ext,
        "cli",
        list_id=list_id,
        batch_size=batch_size,
        skip_merge_validation=skip_merge_validation,
    )
    run_id = started.run.id
    if not as_json:
        verb = "Started" if started.created else "Joined the running"
        say(f"{verb} export run {run_id} to audience {inert(started.run.list_id)}.")
        if note:
            say(note)
        if started.run.skip_merge_validation:
            say("Required merge fields are not checked (skip_merge_validation).")
    if not wait:
        if as_json:
            echo_json(progress(ext.session, run_id))
        else:
            say("Workers do the work: start one with 'flask mcsync worker'.")
        return
    final = follow(ext, run_id, quiet=as_json)
    if as_json:
        echo_json(final, indent=2)
    else:
        say(summary_line(final))
    if final["status"] != RunStatus.FINISHED:
        sys.exit(1)


def _target_note(ext: McSync, list_id: str | None) -> str | None:
    """Make ``--list`` the chosen audience when none is; say what auto-sync will do.

    Auto-sync sends new subscribers to the audience chosen in the settings once its first
    export has finished, so an export elsewhere must not leave the owner believing it
    started.
    """
    if not list_id:
        return None
    current = settings.load(ext.session, ext.config)
    if current.list_id == list_id:
        return None
    name = _audience_name(ext, list_id)  # an id the account does not have stops here
    if current.list_id is None:
        settings.update(ext.session, ext.config, list_id=list_id, list_name=name)
        return (
            f"No audience was chosen, so {inert(list_id)} is now the target audience in the"
            " settings: auto-sync starts once this export has finished."
        )
    return (
        f"This export goes to {inert(list_id)}, not to the audience chosen in the settings"
        f" ({inert(current.list_id)}): auto-sync keeps sending new subscribers there. To"
        f" make {inert(list_id)} the target, run 'flask mcsync settings --list"
        f" {inert(list_id)}' and export again."
    )


@mcsync_cli.command("worker")
@click.option("--burst", is_flag=True, help="Stop when the queue is empty.")
@friendly
def worker(burst: bool) -> None:
    """Run an RQ worker for the sync jobs (inside this app's context)."""
    run_worker(current_app._get_current_object(), burst=burst)  # type: ignore[attr-defined]


@mcsync_cli.command("sweep")
@friendly
def sweep_cmd() -> None:
    """Queue again any run or batch whose worker died (the workers also do this on their own)."""
    counts = sweep_once(state())
    ended = counts["plans_ended"]
    say(
        f"Re-queued {count(counts['plans'], 'planning job')} and"
        f" {count(counts['batches'], 'batch', 'batches')};"
        + (f" ended the planning of {count(ended, 'run')};" if ended else "")
        + f" closed {count(counts['runs_closed'], 'finished run')}."
    )


@mcsync_cli.command("flush")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@friendly
def flush(as_json: bool) -> None:
    """Send the auto-sync rows that are waiting (e.g. after Redis was down), right here."""
    done = flush_outbox(state())
    data = {
        "handled": sum(done.results.values()),
        **done.results,
        "still_waiting": done.still_waiting,
        "redis_problem": done.redis_problem,
    }

    def text() -> None:
        if done.redis_problem:
            say(
                f"{inert(done.redis_problem)}: sending one at a time from here, without the"
                " shared connection slots. Check MCSYNC_REDIS_URL and that Redis is"
                " running; the workers need it."
            )
        say(
            f"Sent {count(done.count('sent'), 'waiting row')}; skipped {done.count('skipped')},"
            f" failed {done.count('failed')}, ignored {done.count('ignored')},"
            f" already sent by an export {done.count('covered')},"
            f" waiting for the first export {done.count('held')},"
            f" to retry later {done.count('retry')}; {done.still_waiting} still waiting."
        )

    emit(data, as_json, text)


@mcsync_cli.command("status")
@click.option("--days", default=7, show_default=True, help="Period to report, 1 to 365 days.")
@click.option(
    "--page", type=RowIdParam("page"), default=1, show_default=True, help="Page of the run list."
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@friendly
def status_cmd(days: int, page: int, as_json: bool) -> None:
    """Every sync of the last DAYS days (manual runs, auto-syncs, re-syncs) and its errors."""
    data = report(state().session, days, page)

    def text() -> None:
        t = data["totals"]
        say(
            f"Last {count(data['days'], 'day')}: {count(t['runs'], 'sync')}; {t['created']}"
            f" created, {t['updated']} updated, {t['archived']} archived in Mailchimp (left"
            f" archived), {count(t['confirmations'], 'confirmation e-mail')} sent,"
            f" {t['skipped']} skipped, {count(t['errors'], 'error')}."
        )
        for r in data["runs"]:
            took = f"{r['duration']}s" if r["duration"] is not None else "-"
            # What a single sync was (signup, opt-out...), after the kind scripts read.
            reason = r["sync_reason"]
            what = f"[{REASON_LABELS.get(reason, reason)}] " if reason else ""
            extra = f", archived {r['archived']}" if r["archived"] else ""
            if r["confirmations"]:
                extra += f", confirmation e-mail sent {r['confirmations']}"
            say(
                f"  #{r['id']:<6} {when(r['created_at'])}  {r['kind']:<7} {r['status']:<9}"
                f" {took:>8}  {what}created {r['created']}, updated {r['updated']}{extra}, skipped"
                f" {r['skipped']}, errors {r['errors']}  ({inert(r['started_by'])})"
            )
            if r["message"]:
                say(f"          {inert(r['message'])}")
        say(f"Page {data['page']} of {data['pages']}.")
        if data["waiting"]["count"]:
            say(f"{count(data['waiting']['count'], 'auto-sync row')} waiting to be sent.")

    emit(data, as_json, text)


@mcsync_cli.command("errors")
@click.option("--days", default=7, show_default=True, help="Period, 1 to 365 days.")
@click.option("--run", "run_id", type=RowIdParam("run number"), help="Only this run's errors.")
@click.option("--kind", type=click.Choice(["permanent", "retried"]), help="Filter by kind.")
@click.option("--csv", "as_csv", is_flag=True, help="Print CSV.")
@friendly
def errors_cmd(days: int, run_id: int | None, kind: str | None, as_csv: bool) -> None:
    """Error outcomes with Mailchimp's title and detail."""
    period = None if run_id else Period.last(check_days(days))
    rows = errors(
        state().session,
        run_id=run_id,
        period=period,
        kind=kind,
        limit=None,
        outcomes=CSV_OUTCOMES if as_csv else (Result.ERROR,),
    )
    if as_csv:
        # Redirected to a file the CSV stays byte for byte; on a terminal it is made inert.
        tty = sys.stdout.isatty()
        for chunk in errors_csv(rows):
            click.echo(say_csv(chunk) if tty else chunk, nl=False)
        return
    for row in rows:
        mark = "permanent" if row["permanent"] else "gave up  "
        say(f"{when(row['at'])}  run {row['run_id']}  {mark}  {inert(row['email'])}")
        say(f"    {inert(row['title'])}: {inert(row['detail'])}")
    say(f"{count(len(rows), 'error')}.")


@mcsync_cli.command("diagnose")
@click.argument("email", type=TextParam("address"))
@click.option("--resync", is_flag=True, help="Re-synchronize it and wait for the outcome.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@friendly
def diagnose_cmd(email: str, resync: bool, as_json: bool) -> None:
    """What we know about one address, what Mailchimp holds now, and a re-sync."""
    ext = state()
    resynced = None
    if resync:
        run = start_resync(ext, email, started_by="cli")
        resynced = _wait_single(ext, run.id)
    data = diagnose(ext, email)
    if resynced is not None:
        data["resync"] = run_summary(resynced)

    def text() -> None:
        say(f"Address: {inert(data['email'])} (identity {inert(data['normalized'])})")
        say("  valid" if data["valid"] else f"  INVALID: {inert(data['invalid_reason'])}")
        say(
            f"  excluded by the {inert(data['excluded_by'])}"
            if data["excluded"]
            else "  not excluded"
        )
        if not data["in_shop"]:
            say("  not in the shop's subscriber source")
        for row in data["in_shop"]:
            role = "subscriber" if row["subscriber"] else "not a subscriber"
            say(f"  in the shop: row {row['id']} {inert(row['email'])}, {role}")
        say(f"  eligible for sync: {'yes' if data['eligible'] else 'no'}")
        mc = data["mailchimp"]
        if data["mailchimp_error"]:
            say(f"  Mailchimp: {inert(data['mailchimp_error'])}")
        elif mc and mc["in_audience"]:
            say(
                f"  Mailchimp: {inert(mc['status'])}, merge fields {inert(mc['merge_fields'])},"
                f" last changed {when(mc['last_changed'])}"
            )
        elif mc:
            say("  Mailchimp: not in the audience")
        for h in data["history"]:
            extra = f" - {inert(h['title'])}: {inert(h['detail'])}" if h["title"] else ""
            what = run_label(h["run_kind"], h["sync_reason"])
            say(f"  {when(h['at'])}  {what}: {LABELS.get(h['outcome'], h['outcome'])}{extra}")
        if resynced is not None:
            say(resync_line(resynced, data["history"]))

    emit(data, as_json, text)


def resync_line(run: Any, history: list[dict[str, Any]]) -> str:
    """How a re-sync ended, with the address's outcome (Mailchimp's error when it failed)."""
    outcome = next((h for h in history if h["run_id"] == run.id), None)
    line = f"Re-sync (run {run.id}) {run.status}"
    if outcome is None:
        line += ": no outcome was recorded"
    elif outcome["outcome"] == Result.ERROR:
        line += f": error - {inert(outcome['title'])}: {inert(outcome['detail'])}"
    else:
        line += f": {outcome['outcome']}"
        if outcome["mailchimp_status"]:
            line += f" (now {inert(outcome['mailchimp_status'])} in Mailchimp)"
    line += "."
    if run.message:
        line += f" {inert(run.message)}"
    return line


def _wait_single(ext: McSync, run_id: int, timeout: float = 120) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ext.session.expire_all()
        run = ext.session.get(Run, run_id)
        if run is not None and run.status in RUN_ENDED:
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
    # Here, not at the top: every 'flask' command loads this module, and the sandbox's
    # server is for development only.
    from .sandbox import serve

    serve(host, port)


# Mailchimp's changes back to the shop: webhook, reconcile, drift (a module of their own).
for _command in both_ways_cli.commands.values():
    mcsync_cli.add_command(_command)
