"""The "Users list synching" tab: the "Manual synching" page and the export window's JSON.

The window asks :func:`export_window` what to show (the running export, or the numbers
of a new one), starts a run with :func:`export_start`, then polls :func:`export_progress`.
Runs are rows: any request, from any browser tab, sees the same run.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, jsonify, render_template, request, url_for
from werkzeug.wrappers import Response

from .. import messages, preflight, runs
from .. import settings as settings_mod
from ..app_state import state
from ..errors import McSyncError
from ..i18n import N_, plural_forms
from ..i18n import gettext as _
from .account import connection_problem
from .labels import BATCH_LABELS, STATUS_LABELS

STARTED_BY = N_("admin pages")  # stored in English, shown translated
# Mailchimp's words for a new contact's status, shown in the page's sentences.
MEMBER_STATUSES = (N_("subscribed"), N_("pending"))

UNPROCESSABLE = 422
BAD_EXPORT_BODY = N_(
    'The request must carry a JSON object, such as {"batch_size": 500}: no export was started.'
)


def register(bp: Blueprint) -> None:
    bp.add_url_rule("/sync", "sync_page", sync_page, methods=["GET"])
    bp.add_url_rule("/sync/export.json", "export_window", export_window, methods=["GET"])
    bp.add_url_rule("/sync/export.json", "export_start", export_start, methods=["POST"])
    bp.add_url_rule(
        "/sync/runs/<int:run_id>.json", "export_progress", export_progress, methods=["GET"]
    )


def sync_page() -> str:
    ext = state()
    session = ext.session
    current = settings_mod.load(session, ext.config)
    last = runs.latest_export(session, current.list_id)
    active = runs.active_export(session, current.list_id) if current.list_id else None
    page = render_template(
        "mcsync/sync.html",
        current=current,
        last=last,
        active=active,
        max_batch_size=ext.config.max_batch_size,
        status_labels=STATUS_LABELS,
        mcsync_js_strings=export_strings(),
    )
    session.commit()
    return page


def export_strings() -> dict[str, Any]:
    """Every sentence export.js shows, in the page's language (``%(name)s`` filled there)."""
    return {
        "server_answered": _("The server answered %(status)s."),
        "choose_audience": _(
            "Choose the Mailchimp audience to export to first, in General settings."
        ),
        "batch_count": plural_forms("→ %(num)s batch", "→ %(num)s batches"),
        "batch_size_range": _("The number per batch must be a whole number between 1 and %(max)s."),
        "lost_contact": _("Lost contact with the server (%(error)s); retrying…"),
        "done_of_total": _("%(done)s of %(total)s addresses"),
        "done_so_far": plural_forms(
            "%(num)s address synchronised so far", "%(num)s addresses synchronised so far"
        ),
        "run_ended": _("Run %(id)s ended after %(time)s."),
        "stalled": _(
            "Nothing has moved for %(seconds)s s: is a worker running? Start one with"
            " 'flask mcsync worker'."
        ),
        "waiting_worker": _("Waiting for a worker to start the export…"),
        "reading": _(
            "Reading the shop's addresses: %(addresses)s to send so far, in %(batches)s batches…"
        ),
        "sending": plural_forms(
            "Sending %(num)s batch to Mailchimp…", "Sending %(num)s batches to Mailchimp…"
        ),
        "rate": _("%(rate)s addresses/s"),
        "left": _("about %(time)s left"),
        "elapsed": _("%(time)s elapsed"),
        "seconds": _("%(seconds)s s"),
        "minutes": _("%(minutes)s min %(seconds)s s"),
        "hours": _("%(hours)s h %(minutes)s min"),
        "processed": _("%(done)s of %(total)s processed"),
        "queued_at_mailchimp": _("in Mailchimp's queue"),
        "attempt": plural_forms("attempt %(num)s", "attempt %(num)s"),
        "refused": plural_forms(
            "Mailchimp refused %(num)s address: the Sync status tab says why.",
            "Mailchimp refused %(num)s addresses: the Sync status tab says why.",
        ),
        "complete": _(
            "The export is complete: check on Mailchimp that all your contacts are there."
        ),
        "not_complete": _("The export did not complete."),
        "closes_in": _("This window closes in %(seconds)s s."),
        "run_labels": {k: _(v) for k, v in STATUS_LABELS.items()},
        "batch_labels": {k: _(v) for k, v in BATCH_LABELS.items()},
    }


def export_window() -> Response:
    """What the "Export users" window opens on: the running export, or a preview."""
    ext = state()
    session = ext.session
    current = settings_mod.load(session, ext.config)
    data: dict[str, Any] = {
        "list": {"id": current.list_id, "name": current.list_name} if current.list_id else None,
        "settings_url": url_for(".settings_page"),
        "batch_size": current.batch_size,
        "max_batch_size": ext.config.max_batch_size,
        "status_if_new": current.status_if_new,
        # The settings page warns when Mailchimp cannot be reached; so does the window.
        "unreachable": connection_problem(ext),
        "run": None,
        "counts": None,
        "merge_fields": None,
        "error": None,
    }
    if current.list_id:
        active = runs.active_export(session, current.list_id)
        if active is not None:
            # Re-opening the window while a run goes on: show it, skip the costly count.
            data["run"] = _progress(active.id)
        else:
            try:
                # The counts and the required merge field check, as `flask mcsync preview`.
                data.update(preflight.preview(ext, current.list_id))
            except McSyncError as exc:
                data["error"] = str(exc)
    session.commit()
    return jsonify(data)


def export_start() -> tuple[Response, int]:
    """Start the export (or join the running one); 202 when a new run was queued."""
    ext = state()
    body = request.get_json(silent=True)
    if request.is_json and not isinstance(body, dict):
        # A broken body must not start an export with the defaults.
        return jsonify(error=_(BAD_EXPORT_BODY)), 400
    sent = body.get("batch_size") if isinstance(body, dict) else request.form.get("batch_size")
    try:
        batch_size = (
            settings_mod.check_batch_size(sent, ext.config) if sent not in (None, "") else None
        )
    except settings_mod.InvalidSetting as exc:
        return jsonify(error=str(exc), field="batch_size"), UNPROCESSABLE
    raw_skip = (
        body.get("skip_merge_validation")
        if isinstance(body, dict)
        else request.form.get("skip_merge_validation")
    )
    skip = raw_skip is True or str(raw_skip).lower() in ("1", "true", "on", "yes")
    try:
        started = runs.start_export(
            ext, STARTED_BY, batch_size=batch_size, skip_merge_validation=skip
        )
    except McSyncError as exc:
        ext.session.rollback()
        return jsonify(error=str(exc)), UNPROCESSABLE
    data = {
        "run_id": started.run.id,
        "created": started.created,
        "progress": _progress(started.run.id),
    }
    ext.session.commit()
    return jsonify(data), 202 if started.created else 200


def export_progress(run_id: int) -> tuple[Response, int]:
    data = _progress(run_id)
    state().session.commit()  # the next poll must see the workers' new rows
    if data is None:
        return jsonify(error=_("There is no export run %(id)s.", id=run_id), status=404), 404
    return jsonify(data), 200


def _progress(run_id: int) -> dict[str, Any] | None:
    ext = state()
    data = runs.progress(ext.session, run_id)
    if data is not None:
        current = settings_mod.load(ext.session, ext.config)
        data["list_name"] = (
            current.list_name if current.list_id == data["list_id"] else data["list_id"]
        )
        data["message_text"] = messages.translate(data["message"])
        # A batch being retried says why ("Attempt 2: Timeout: ..."), in the page's words.
        for batch in data.get("batches") or []:
            batch["last_error_text"] = messages.translate(batch.get("last_error"))
    return data
