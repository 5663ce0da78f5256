"""The "Diagnostic tool" subtab: everything about one address, and "Re-synchronize".

The page is a GET form (``?email=``), so a diagnosis can be bookmarked. The button
posts to :func:`resync`, which queues the re-sync and redirects back with ``run=<id>``;
``static/mcsync/status.js`` then polls the run's JSON and reloads the page once it has
ended, so the outcome and Mailchimp's fresh state appear by themselves.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, flash, redirect, render_template, request, url_for
from werkzeug.wrappers import Response

from ..app_state import state
from ..diagnostic import diagnose, start_resync
from ..errors import McSyncError
from ..i18n import N_
from ..i18n import gettext as _
from ..models import Run
from ..outcomes import KIND_LABELS, run_outcomes
from ..statuses import RUN_ENDED, RunKind
from ..times import parse_time
from .labels import STATUS_LABELS, translated
from .request_input import query_id

STARTED_BY = N_("admin pages (diagnostic tool)")  # stored in English, shown translated
MAX_EMAIL = 320


def register(bp: Blueprint) -> None:
    bp.add_url_rule("/status/diagnostic", "diagnostic_page", diagnostic_page, methods=["GET"])
    bp.add_url_rule("/status/diagnostic/resync", "resync", resync, methods=["POST"])


def resync_refusal(answer: dict[str, Any]) -> str | None:
    """Why the button is disabled for this address, or None when a re-sync makes sense."""
    if not answer["valid"]:
        return _("This address is not valid: %(reason)s", reason=answer["invalid_reason"])
    if answer["excluded"]:
        return _("This address is excluded by the %(rule)s rule.", rule=answer["excluded_by"])
    if not answer["in_shop"]:
        return _("This address is not in the shop's subscriber source: there is nothing to send.")
    if not answer["subscriber"]:
        return _("This address is in the shop but is not a newsletter subscriber.")
    return None


def resync_strings() -> dict[str, str]:
    """The re-sync poller's sentences (status.js), in the page's language."""
    return {
        "queued": _("Queued: waiting for a worker to send the address to Mailchimp…"),
        "running": _("Running: the address is being sent to Mailchimp…"),
        "server_answered": _("The server answered %(status)s."),
        "done": _("Done: showing the outcome…"),
        "stalled": _(
            "(still queued after %(seconds)s s: is a worker running? Start one with"
            " “flask mcsync worker”.)"
        ),
        "poll_failed": _("Could not check the re-synchronization: %(error)s Trying again…"),
    }


def diagnostic_page() -> str:
    ext = state()
    session = ext.session
    typed = request.args.get("email", "")[:MAX_EMAIL]
    answer: dict[str, Any] | None = None
    error = None
    # The re-sync first: its run ends in the same commit that records its outcome, so a
    # run read as ended here has its outcome in the history read below. Read the other
    # way round, a run that ended in between showed "Updated" above a history without
    # it, and the page, its run ended, never reloaded.
    resync_run = _resync_run(query_id("run"))
    if typed.strip():
        try:
            # Without Redis or Mailchimp the answer still comes, with mailchimp_error.
            answer = diagnose(ext, typed, live=True)
        except McSyncError as exc:
            session.rollback()
            error = str(exc)
    session.commit()  # end the read transaction
    if answer is not None:
        for row in answer["history"]:
            row["at_dt"] = parse_time(row["at"])
        if answer["mailchimp"]:
            answer["mailchimp"]["last_changed_dt"] = parse_time(
                answer["mailchimp"].get("last_changed")
            )
    return render_template(
        "mcsync/diagnostic.html",
        typed=typed,
        answer=answer,
        error=error,
        refusal=resync_refusal(answer) if answer else None,
        resync_run=resync_run,
        kind_labels=translated(KIND_LABELS),
        status_labels=translated(STATUS_LABELS),
        # Only a re-sync still running loads status.js, which needs its sentences.
        mcsync_js_strings=resync_strings() if resync_run and not resync_run["ended"] else None,
    )


def _resync_run(run_id: int | None) -> dict[str, Any] | None:
    """The re-sync just asked for (``run=`` after the redirect), with its outcome."""
    if run_id is None:
        return None
    session = state().session
    run = session.get(Run, run_id)
    if run is None or run.kind != RunKind.RESYNC:
        return None
    outcomes = run_outcomes(session, run_id, limit=1)
    return {
        "id": run.id,
        "status": run.status,
        "ended": run.status in RUN_ENDED,
        "message": run.message,
        "outcome": outcomes[0] if outcomes else None,
    }


def resync() -> Response:
    ext = state()
    email = request.form.get("email", "")[:MAX_EMAIL].strip()
    if not email:
        flash(_("Type the address to re-synchronize."), "error")
        return redirect(url_for(".diagnostic_page"), 303)
    try:
        run = start_resync(ext, email, started_by=STARTED_BY)
    except McSyncError as exc:
        ext.session.rollback()
        flash(_("The re-synchronization could not start. %(error)s", error=exc), "error")
        return redirect(url_for(".diagnostic_page", email=email), 303)
    run_id = run.id
    ext.session.commit()
    return redirect(url_for(".diagnostic_page", email=email, run=run_id, _anchor="resync"), 303)
