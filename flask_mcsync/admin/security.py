"""Who may use the admin pages, and proof that a form was sent by them.

Default deny: without a host-provided ``authorize`` callable every page answers 403 and
says how to configure one. State-changing requests carry a CSRF token kept in the
Flask session, so no form library is needed. A host that protects its whole app with
Flask-WTF's ``CSRFProtect`` gets our blueprint exempted from it (see ``blueprint.py``):
our own check covers it.
"""

from __future__ import annotations

import hmac
import secrets

from flask import abort, request, session

from ..app_state import state
from ..i18n import N_

SESSION_KEY = "mcsync_csrf"
HEADER = "X-CSRF-Token"
FIELD = "csrf_token"

# In English here; the error page shows them in the visitor's language.
NO_AUTHORIZE = N_(
    "The Mailchimp admin pages are closed until the app says who may use them: pass"
    " authorize=<callable returning True for your admins> to MailchimpSync(...) or"
    " init_app(...)."
)
NOT_ALLOWED = N_("You are not allowed to use the Mailchimp admin pages: log in as a shop admin.")
CSRF_FAILED = N_(
    "This form expired or did not come from the admin pages (missing CSRF token):"
    " reload the page and try again."
)


def check_access() -> None:
    authorize = state().authorize
    if authorize is None:
        abort(403, NO_AUTHORIZE)
    if not authorize():
        abort(403, NOT_ALLOWED)


def csrf_token() -> str:
    token = session.get(SESSION_KEY)
    if not token:
        token = session[SESSION_KEY] = secrets.token_urlsafe(32)
    return str(token)


def check_csrf() -> None:
    if request.method in ("GET", "HEAD", "OPTIONS"):
        return
    sent = request.headers.get(HEADER) or request.form.get(FIELD) or ""
    expected = session.get(SESSION_KEY) or ""
    # As bytes: compare_digest refuses str with non-ASCII characters (a TypeError, a 500).
    if not expected or not hmac.compare_digest(str(sent).encode(), str(expected).encode()):
        abort(400, CSRF_FAILED)
