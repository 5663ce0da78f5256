"""The admin blueprint: access control, CSRF, error pages, layout helpers, and the views.

Every page and JSON endpoint sits behind :func:`~.security.check_access` (default deny)
and :func:`~.security.check_csrf`; the views themselves live in :mod:`.settings_views`
and :mod:`.sync_views`. A new page (the "Sync status" dashboard, the "Diagnostic tool")
is a module with a ``register(bp)`` function called below; its tab appears by itself once
its endpoint is one of :data:`.tabs.TABS`.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, current_app, g, jsonify, render_template, request
from flask.blueprints import BlueprintSetupState
from markupsafe import Markup, escape
from werkzeug.exceptions import HTTPException
from werkzeug.wrappers import Response

from .. import i18n, messages
from ..app_state import state
from ..i18n import N_
from ..messages import EVENT_TYPE_LABELS
from .both_ways_views import register as register_both_ways_views
from .diagnostic_views import register as register_diagnostic_views
from .filters import register as register_filters
from .labels import (
    EVENT_STATUS_LABELS,
    MEMBER_STATUS_LABELS,
    OUTCOME_LABELS,
    WEBHOOK_SOURCE_LABELS,
)
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
    # First: the 403 page and every flash message are in the visitor's language too.
    bp.before_request(_activate_locale)
    bp.teardown_request(_deactivate_locale)
    bp.before_request(_check_access)
    bp.before_request(check_csrf)
    bp.before_request(_check_request)
    bp.after_request(_security_headers)
    bp.record_once(_exempt_from_flask_wtf)
    bp.context_processor(_template_helpers)
    register_filters(bp)
    for code in (400, 403, 404, 405):
        bp.register_error_handler(code, _error_page)

    register_settings_views(bp)
    register_sync_views(bp)
    register_status_views(bp)
    register_diagnostic_views(bp)
    register_both_ways_views(bp)
    return bp


def _activate_locale() -> None:
    ext = state()
    host_babel = current_app.extensions.get("babel")
    g.mcsync_locale_token = i18n.activate(
        i18n.choose(
            _host_locale if host_babel is not None else None,
            ext.config.locale,
            request.accept_languages,
        )
    )


def _host_locale() -> str | None:
    """The locale the host's Flask-Babel chose for this request (its own selector)."""
    from flask_babel import get_locale

    locale = get_locale()
    return str(locale) if locale is not None else None


def _deactivate_locale(_exc: BaseException | None = None) -> None:
    token = g.pop("mcsync_locale_token", None)
    if token is not None:
        i18n.deactivate(token)


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
        "_": template_gettext,
        "gettext": template_gettext,
        "ngettext": template_ngettext,
        "pgettext": i18n.pgettext,
        "mcsync_locale": i18n.current_locale,
        "outcome_labels": OUTCOME_LABELS,
        "member_status_labels": MEMBER_STATUS_LABELS,
        "webhook_source_labels": WEBHOOK_SOURCE_LABELS,
        "event_status_labels": EVENT_STATUS_LABELS,
        "event_type_labels": EVENT_TYPE_LABELS,
        "csrf_token": csrf_token,
        "mcsync_tabs": visible_tabs,
        # Pages link to views added later (Sync status...) only once they exist.
        "mcsync_endpoints": current_app.view_functions,
    }


def template_gettext(message: str, **values: Any) -> Markup:
    """``_()`` in our templates: the translation is trusted markup (it may hold <strong>),
    the values put into it are escaped (they may be addresses or Mailchimp's words)."""
    text = i18n.translations(i18n.current_locale()).gettext(message)
    return Markup(text % {k: escape(v) for k, v in values.items()} if values else text)


def template_ngettext(singular: str, plural: str, num: int, **values: Any) -> Markup:
    text = i18n.translations(i18n.current_locale()).ngettext(singular, plural, num)
    values.setdefault("num", i18n.format_number(num))
    return Markup(text % {k: escape(v) for k, v in values.items()})


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


# werkzeug's words for the errors our pages answer, so that they are translated too.
HTTP_ERROR_TEXTS = (
    N_("Bad Request"),
    N_("The browser (or proxy) sent a request that this server could not understand."),
    N_("Forbidden"),
    N_(
        "You don't have the permission to access the requested resource. It is either"
        " read-protected or not readable by the server."
    ),
    N_("Not Found"),
    N_(
        "The requested URL was not found on the server. If you entered the URL manually"
        " please check your spelling and try again."
    ),
    N_("Method Not Allowed"),
    N_("The method is not allowed for the requested URL."),
)


def _error_page(error: HTTPException) -> tuple[Any, int]:
    code = error.code or 500
    sentence = messages.translate(error.description or error.name)
    if wants_json():
        return jsonify(error=sentence, status=code), code
    title = messages.translate(error.name)
    page = render_template("mcsync/error.html", code=code, title=title, sentence=sentence)
    return page, code
