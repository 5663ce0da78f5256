"""Mailchimp's changes back to the shop: the "Connect Mailchimp's changes" buttons of
General settings, and the "Drift report" subtab of Sync status (with its CSV and a
"Reconcile now" button that queues the reconcile job).

The same functions as ``flask mcsync webhook|reconcile|drift``.
"""

from __future__ import annotations

from collections.abc import Iterator

from flask import Blueprint, flash, redirect, render_template, stream_with_context, url_for
from werkzeug.wrappers import Response

from .. import connect, drift, messages
from .. import settings as settings_mod
from ..app_state import state
from ..enqueue import enqueue_reconcile
from ..errors import McSyncError
from ..gateway import MailchimpError
from ..i18n import gettext as _

ROWS_SHOWN = 200  # the CSV has them all


def register(bp: Blueprint) -> None:
    bp.add_url_rule("/webhook/register", "register_webhook", register_webhook, methods=["POST"])
    bp.add_url_rule("/webhook/remove", "remove_webhook", remove_webhook, methods=["POST"])
    bp.add_url_rule("/status/drift", "drift_page", drift_page, methods=["GET"])
    bp.add_url_rule("/status/drift.csv", "drift_csv", drift_csv, methods=["GET"])
    bp.add_url_rule("/status/reconcile", "start_reconcile", start_reconcile, methods=["POST"])


def _back() -> Response:
    return redirect(url_for(".settings_page", _anchor="mailchimp-changes"))


def register_webhook() -> Response:
    try:
        found = connect.register(state())
    except McSyncError as exc:
        flash(
            _(
                "Mailchimp refused the webhook: %(title)s. %(detail)s",
                title=exc.title,
                detail=exc.full_detail,
            )
            if isinstance(exc, MailchimpError)
            else messages.translate(str(exc)),
            "error",
        )
        return _back()
    flash(
        _(
            "Mailchimp's changes are connected: unsubscribes, bounces, profile and address"
            " changes on audience %(id)s now come back to the shop.",
            id=found.list_id,
        ),
        "success",
    )
    return _back()


def remove_webhook() -> Response:
    try:
        removed = connect.remove(state())
    except McSyncError as exc:
        error = messages.translate(str(exc))
        flash(_("The webhook could not be removed: %(error)s", error=error), "error")
        return _back()
    flash(
        _(
            "Disconnected: Mailchimp's changes no longer come back by themselves (reconcile"
            " still reads them)."
        )
        if removed
        else _("No webhook of this shop was in place."),
        "success" if removed else "info",
    )
    return _back()


def drift_page() -> str:
    ext = state()
    session = ext.session
    list_id = settings_mod.load(session, ext.config).list_id
    found = drift.report(session, ext.require_source(), list_id, limit=ROWS_SHOWN)
    session.commit()
    return render_template(
        "mcsync/drift.html",
        report=found,
        kinds=list(drift.DriftKind),
        labels=drift.LABELS,
        actions=drift.ACTIONS,
        shop_sides=drift.SHOP_SIDE_LABELS,
        rows_shown=ROWS_SHOWN,
        config=ext.config,
    )


def drift_csv() -> Response:
    ext = state()
    session = ext.session
    list_id = settings_mod.load(session, ext.config).list_id
    source = ext.require_source()

    def generate() -> Iterator[str]:
        if list_id:
            yield from drift.as_csv(drift.rows(session, source, list_id))
        session.commit()

    return Response(
        stream_with_context(generate()),
        mimetype="text/csv",
        headers={"Content-Disposition": "attachment; filename=mailchimp-drift.csv"},
    )


def start_reconcile() -> Response:
    try:
        queued = enqueue_reconcile(state())
    except McSyncError as exc:
        flash(str(exc), "error")
        return redirect(url_for(".drift_page"))
    except Exception as exc:  # Redis down: say so, nothing is lost
        flash(
            _("Could not queue the reconcile (%(error)s): check that Redis is running.", error=exc),
            "error",
        )
        return redirect(url_for(".drift_page"))
    flash(
        _("Reconcile queued: a worker reads Mailchimp's changes now; reload this page in a moment.")
        if queued
        else _("A reconcile is already waiting for a worker."),
        "info",
    )
    return redirect(url_for(".drift_page"))
