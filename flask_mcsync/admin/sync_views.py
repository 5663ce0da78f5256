"""The "Users list synching" tab: the "Manual synching" page and the export window's JSON.

The window asks :func:`export_window` what to show (the running export, or the numbers
of a new one), starts a run with :func:`export_start`, then polls :func:`export_progress`.
Runs are rows: any request, from any browser tab, sees the same run.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, jsonify, render_template, request, url_for
from werkzeug.wrappers import Response

from .. import preflight, runs
from .. import settings as settings_mod
from ..config import ConfigError
from ..extension import state

UNPROCESSABLE = 422


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
    )
    session.commit()
    return page


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
            except ConfigError as exc:
                data["error"] = str(exc)
    session.commit()
    return jsonify(data)


def export_start() -> tuple[Response, int]:
    """Start the export (or join the running one); 202 when a new run was queued."""
    ext = state()
    body = request.get_json(silent=True)
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
            ext, "admin pages", batch_size=batch_size, skip_merge_validation=skip
        )
    except (runs.ExportError, ConfigError) as exc:
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
        return jsonify(error=f"There is no export run {run_id}.", status=404), 404
    return jsonify(data), 200


def _progress(run_id: int) -> dict[str, Any] | None:
    ext = state()
    data = runs.progress(ext.session, run_id)
    if data is not None:
        current = settings_mod.load(ext.session, ext.config)
        data["list_name"] = (
            current.list_name if current.list_id == data["list_id"] else data["list_id"]
        )
    return data
