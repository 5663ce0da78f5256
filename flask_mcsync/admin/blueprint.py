"""The admin blueprint: access control, CSRF, error pages, layout helpers, and the views.

Every page and JSON endpoint sits behind :func:`~.security.check_access` (default deny)
and :func:`~.security.check_csrf`; the views themselves live in :mod:`.settings_views`
and :mod:`.sync_views`. A new page (the "Sync status" dashboard, the "Diagnostic tool")
is a module with a ``register(bp)`` function called below; its tab appears by itself once
its endpoint is one of :data:`.tabs.TABS`.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, current_app, jsonify, render_template, request
from flask.blueprints import BlueprintSetupState
from werkzeug.exceptions import HTTPException
from werkzeug.wrappers import Response

from .both_ways_views import register as register_both_ways_views
from .diagnostic_views import register as register_diagnostic_views
from .request_input import check_request
from .security import check_access, check_csrf, csrf_token
from .settings_views import register as register_settings_views
from .status_views import register as register_status_views
from .sync_views import register as register_sync_views
from .tabs import visible_tabs

NAME = "mcsync"

# Our pages load scripts and styles from our own static folder only, so the browser can
# refuse anything injected: a second line of defence behind template escaping.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:;"
        " object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


def make_blueprint() -> Blueprint:
    bp = Blueprint(
        NAME,
        __name__,
        template_folder="../templates",
        static_folder="../static/mcsync",
        static_url_path="/static",
    )
    bp.before_request(_check_access)
    bp.before_request(check_csrf)
    bp.before_request(_check_request)
    bp.after_request(_security_headers)
    bp.record_once(_exempt_from_flask_wtf)
    bp.context_processor(_template_helpers)
    for code in (400, 403, 404, 405):
        bp.register_error_handler(code, _error_page)

    register_settings_views(bp)
    register_sync_views(bp)
    register_status_views(bp)
    register_diagnostic_views(bp)
    register_both_ways_views(bp)
    return bp


def _check_access() -> None:
    # Our CSS and JS hold no data, and the 403 page itself needs the stylesheet.
    if request.endpoint != f"{NAME}.static":
        check_access()


def _check_request() -> None:
    if request.endpoint != f"{NAME}.static":
        check_request()


def _exempt_from_flask_wtf(setup: BlueprintSetupState) -> None:
    """Flask-WTF's CSRFProtect would refuse our fetch() calls; our own check covers them.

    Only a CSRFProtect registered before the extension is seen here; a host that sets it
    up later can call ``csrf.exempt("mcsync")`` itself.
    """
    csrf = setup.app.extensions.get("csrf")
    if csrf is not None and hasattr(csrf, "exempt"):
        csrf.exempt(setup.blueprint)


def _template_helpers() -> dict[str, Any]:
    return {
        "csrf_token": csrf_token,
        "mcsync_tabs": visible_tabs,
        # Pages link to views added later (Sync status...) only once they exist.
        "mcsync_endpoints": current_app.view_functions,
    }


def _security_headers(response: Response) -> Response:
    for name, value in SECURITY_HEADERS.items():
        # Static files may be cached: they hold no data.
        if name == "Cache-Control" and request.endpoint == f"{NAME}.static":
            continue
        response.headers.setdefault(name, value)
    return response


def wants_json() -> bool:
    """JSON endpoints end in ``.json`` or are called by our script with the CSRF header."""
    return (
        request.path.endswith(".json")
        or request.is_json
        or request.accept_mimetypes.best == "application/json"
    )


def _error_page(error: HTTPException) -> tuple[Any, int]:
    code = error.code or 500
    sentence = error.description or error.name
    if wants_json():
        return jsonify(error=sentence, status=code), code
    page = render_template("mcsync/error.html", code=code, title=error.name, sentence=sentence)
    return page, code
