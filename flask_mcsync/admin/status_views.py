"""The "Sync status" tab: the period dashboard, one run's batches and errors, the CSV.

Everything is a GET with its filters in the query string, so a page can be bookmarked
or sent to a colleague. The numbers come from :mod:`flask_mcsync.status`; this module
only reads the query string, has the per-day chart's geometry computed (:mod:`.chart`;
inline SVG, no script) and renders. A small JSON view gives one run's state for the
diagnostic tool's script.
"""

from __future__ import annotations

from flask import (
    Blueprint,
    abort,
    jsonify,
    render_template,
    request,
    stream_with_context,
)
from werkzeug.wrappers import Response

from .. import runs, status
from ..app_state import state
from ..i18n import N_, csv_dialect
from ..i18n import gettext as _
from ..models import Run
from ..outcomes import KIND_LABELS, run_outcomes
from ..statuses import RUN_ENDED, RunKind
from ..times import parse_time
from .chart import draw_chart
from .labels import BATCH_LABELS, STATUS_LABELS, translated
from .request_input import query_id

UNPROCESSABLE = 422
DEFAULT_DAYS = 7
ERRORS_SHOWN = 200  # per page; the CSV has them all

ERROR_KIND_LABELS = {
    "": N_("All errors"),
    "permanent": N_("Permanent"),
    "retried": N_("Retried, gave up"),
}
# The actions of waiting auto-syncs (status.html translates them by these words).
WAITING_ACTIONS = (
    N_("Add or update"),
    N_("Unsubscribe"),
    N_("Signup"),
    N_("Profile change"),
    N_("Newsletter opt-in"),
    N_("Opt-out"),
)
# The CSV's column titles: the field names in English (scripts read them), the page's
# words in another language, whose spreadsheet users read them.
CSV_HEADERS = {
    "run_id": N_("run_id"),
    "at": N_("at"),
    "email": N_("email"),
    "outcome": N_("outcome"),
    "title": N_("title"),
    "detail": N_("detail"),
    "permanent": N_("permanent"),
}


def register(bp: Blueprint) -> None:
    bp.add_url_rule("/status", "status_page", status_page, methods=["GET"])
    bp.add_url_rule("/status/runs/<int:run_id>", "run_page", run_page, methods=["GET"])
    bp.add_url_rule("/status/runs/<int:run_id>.json", "run_status", run_status, methods=["GET"])
    bp.add_url_rule("/status/errors.csv", "errors_csv", errors_csv, methods=["GET"])


# --- query string ---------------------------------------------------------------------------


def _days() -> tuple[int, str | None]:
    """The period asked for (default 7 days), or the default and the sentence saying why."""
    raw = request.args.get("days", "").strip()
    if not raw:
        return DEFAULT_DAYS, None
    try:
        return status.check_days(raw), None
    except status.InvalidPeriod as exc:
        return DEFAULT_DAYS, str(exc)


def _page() -> int:
    return query_id("page") or 1


def _error_filter() -> tuple[str, str]:
    kind = request.args.get("kind", "")
    return (kind if kind in status.ERROR_KINDS else ""), request.args.get("title", "").strip()


# --- pages ----------------------------------------------------------------------------------


def status_page() -> tuple[str, int]:
    session = state().session
    days, period_error = _days()
    kind, title = _error_filter()
    report = status.report(session, days, _page())
    period = status.Period.last(days)
    errors = status.errors(
        session, period=period, kind=kind or None, title=title or None, limit=ERRORS_SHOWN
    )
    session.commit()  # end the read transaction
    for run in report["runs"]:
        run["created_dt"] = parse_time(run["created_at"])
    page = render_template(
        "mcsync/status.html",
        report=report,
        typed_days=request.args.get("days", str(days)) if period_error else str(days),
        period_error=period_error,
        chart=draw_chart(report["daily"], days),
        errors=errors,
        errors_capped=len(errors) >= ERRORS_SHOWN,
        kind=kind,
        title=title,
        kind_labels=translated(KIND_LABELS),
        status_labels=translated(STATUS_LABELS),
        error_kind_labels=translated(ERROR_KIND_LABELS),
    )
    return page, UNPROCESSABLE if period_error else 200


def run_page(run_id: int) -> str:
    session = state().session
    run = session.get(Run, run_id)
    if run is None:
        abort(404, _("There is no sync run %(id)s: it may have been deleted.", id=run_id))
    kind, title = _error_filter()
    progress = runs.progress(session, run_id) or {}
    summary = status.run_summary(run)
    titles = status.error_titles(session, run_id)
    errors = status.errors(
        session, run_id=run_id, kind=kind or None, title=title or None, limit=ERRORS_SHOWN
    )
    outcomes = run_outcomes(session, run_id) if run.kind != RunKind.EXPORT else []
    session.commit()
    back_days, _error = _days()
    return render_template(
        "mcsync/status_run.html",
        batch_labels=BATCH_LABELS,
        run=run,
        summary=summary,
        progress=progress,
        batches=runs.batches(session, run_id),
        titles=titles,
        errors=errors,
        errors_capped=len(errors) >= ERRORS_SHOWN,
        outcomes=outcomes,
        kind=kind,
        title=title,
        back_days=back_days,
        kind_labels=translated(KIND_LABELS),
        status_labels=translated(STATUS_LABELS),
        error_kind_labels=translated(ERROR_KIND_LABELS),
    )


def run_status(run_id: int) -> tuple[Response, int]:
    """One run's state and its outcomes (a single-address run has one): polled by status.js."""
    session = state().session
    session.expire_all()  # the worker's new rows, not this session's cached ones
    run = session.get(Run, run_id)
    if run is None:
        session.commit()
        return jsonify(error=_("There is no sync run %(id)s.", id=run_id), status=404), 404
    data = status.run_summary(run)
    data["ended"] = run.status in RUN_ENDED
    data["status_label"] = _(STATUS_LABELS.get(run.status, run.status))
    data["outcomes"] = run_outcomes(session, run_id)
    session.commit()
    return jsonify(data), 200


def errors_csv() -> Response:
    """The errors of one run (``run=``) or of the period (``days=``), filtered like the page."""
    session = state().session
    kind, title = _error_filter()
    run_id = query_id("run")
    if run_id is not None:
        rows = status.errors(
            session,
            run_id=run_id,
            kind=kind or None,
            title=title or None,
            limit=None,
            outcomes=status.CSV_OUTCOMES,
        )
        name = f"mailchimp-errors-run-{run_id}"
    else:
        days, period_error = _days()
        if period_error:
            abort(400, period_error)
        rows = status.errors(
            session,
            period=status.Period.last(days),
            kind=kind or None,
            title=title or None,
            limit=None,
            outcomes=status.CSV_OUTCOMES,
        )
        name = f"mailchimp-errors-last-{days}-days"
    session.commit()
    if kind:
        name += f"-{kind}"
    delimiter, bom = csv_dialect()
    chunks = status.errors_csv(rows, headers=translated(CSV_HEADERS), delimiter=delimiter, bom=bom)
    response = Response(stream_with_context(chunks), mimetype="text/csv; charset=utf-8")
    response.headers["Content-Disposition"] = f'attachment; filename="{name}.csv"'
    return response
