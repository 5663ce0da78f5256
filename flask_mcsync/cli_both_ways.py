"""``flask mcsync webhook|reconcile|drift``: Mailchimp's changes back to the shop.

The same functions as the "Connect Mailchimp's changes" card and the drift report tab;
they are added to the ``mcsync`` group by :mod:`cli`, which imports this module.
"""

from __future__ import annotations

import sys

import click
from flask.cli import AppGroup

from . import connect, drift
from . import settings as settings_mod
from .app_state import state
from .cli_output import emit, friendly, say_csv
from .reconcile import reconcile
from .terminal import say, when

#: Holds this module's commands until :mod:`cli` adds them to the ``mcsync`` group.
both_ways_cli = AppGroup("both-ways")


@both_ways_cli.group("webhook")
def webhook_cli() -> None:
    """Connect Mailchimp's changes (unsubscribes, bounces, profile and address changes)."""


def _echo_status(found: connect.WebhookStatus) -> None:
    if found.in_place:
        say(f"The webhook is in place on audience {found.list_id}: {found.url}")
        say(
            "  sources: "
            + ", ".join(f"{k} {'on' if v else 'off'}" for k, v in sorted(found.sources.items()))
        )
    elif found.in_place is False:
        say(
            f"No webhook of this shop on audience {found.list_id}: run"
            " 'flask mcsync webhook register'."
        )
    if found.error:
        say(found.error)
    if found.last_event_at:
        say(f"Last event: {found.last_event_type} at {when(found.last_event_at)}.")
    else:
        say("No event has arrived yet.")


@webhook_cli.command("register")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@friendly
def webhook_register(as_json: bool) -> None:
    """Register the webhook on the audience (user and admin changes, not API ones)."""
    found = connect.register(state())
    emit(found.as_dict(), as_json, lambda: _echo_status(found))


@webhook_cli.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@friendly
def webhook_status(as_json: bool) -> None:
    """Whether the webhook is in place (asked of Mailchimp) and when an event last came."""
    found = connect.status(state())
    emit(found.as_dict(), as_json, lambda: _echo_status(found))


@webhook_cli.command("remove")
@friendly
def webhook_remove() -> None:
    """Remove the shop's webhook from the audience."""
    removed = connect.remove(state())
    say(f"Removed {removed} webhook(s)." if removed else "No webhook of this shop was in place.")


@both_ways_cli.command("reconcile")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@friendly
def reconcile_cmd(as_json: bool) -> None:
    """Read what changed in Mailchimp since the last reconcile and apply it to the shop."""
    result = reconcile(state(), started_by="cli")  # ReconcileBusy: _friendly says it

    def text() -> None:
        what = "the whole audience" if result.first else f"changes since {result.since}"
        say(
            f"Reconcile run {result.run_id}: read {result.read} member(s) ({what}) in"
            f" {result.requests} request(s), {result.seconds:g}s; applied {result.applied}"
            f" change(s) to the shop, {result.stale} older than what was known."
        )

    emit(result.as_dict(), as_json, text)


@both_ways_cli.command("drift")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (every row).")
@click.option("--csv", "as_csv", is_flag=True, help="Print every row as CSV.")
@friendly
def drift_cmd(as_json: bool, as_csv: bool) -> None:
    """Where the shop and Mailchimp disagree, from the last reconcile, with the action."""
    ext = state()
    session = ext.session
    source = ext.require_source()
    list_id = settings_mod.load(session, ext.config).list_id
    if as_csv:
        if list_id:
            # Redirected to a file the CSV stays byte for byte; on a terminal it is inert.
            tty = sys.stdout.isatty()
            for chunk in drift.as_csv(drift.rows(session, source, list_id)):
                click.echo(say_csv(chunk) if tty else chunk, nl=False)
        return
    found = drift.report(session, source, list_id, limit=0 if not as_json else 10**9)

    def text() -> None:
        if not found.reconciled_at:
            say("No reconcile yet: run 'flask mcsync reconcile' first.")
        else:
            say(
                f"From the last reconcile ({when(found.reconciled_at)}), {found.members_known}"
                " member(s) known:"
            )
        for kind in drift.DriftKind:
            say(
                f"  {found.counts.get(kind.value, 0):>8}  {drift.LABELS[kind]}"
                f"  → {drift.ACTIONS[kind].value}"
            )

    emit(found.as_dict(), as_json, text)
