"""The shop's own safety: its login form and its pages, kept safe to copy.

* ``next=`` after login only ever leads to a path on this site (no open redirect).
* Wrong passwords are throttled per client and for the admin account as a whole,
  counted in the database so every server process shares the count.
* Login and logout carry a CSRF token kept in the session.
* Every page refuses to be framed (clickjacking), and the session cookie is
  ``SameSite=Lax`` (set in :func:`example_app.create_app`).
"""

from __future__ import annotations

import hmac
import secrets
from datetime import datetime, timedelta, timezone

from flask import abort, request, session, url_for
from werkzeug.wrappers import Response

from .models import LoginFailure, db

CSRF_KEY = "shop_csrf"
WINDOW = timedelta(minutes=1)
CLIENT_LIMIT = 5  # wrong passwords per client per WINDOW
ACCOUNT_LIMIT = 20  # wrong passwords for the admin account, from anywhere, per WINDOW
TOO_MANY = (
    "Too many wrong passwords: login is paused for a minute. Wait, then try again"
    " (or set SHOP_ADMIN_PASSWORD again if you forgot it)."
)

FRAME_HEADERS = {
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
}


def safe_next(target: str | None) -> str:
    """Where to go after login: ``target`` if it is a path on this site, else the admin."""
    default = url_for("mcsync.settings_page")
    if not target:
        return default
    # Browsers read "\" as "/", so "/\evil" and "\\evil" are other sites, like "//evil".
    if (
        not target.startswith("/")
        or target.startswith("//")
        or "\\" in target
        or any(ord(c) < 0x20 or c == "\x7f" for c in target)
    ):
        return default
    return target


def client_id() -> str:
    # The remote address as the server sees it; behind a proxy, ProxyFix sets it.
    return (request.remote_addr or "unknown")[:64]


def login_paused() -> bool:
    """True while this client or the admin account has used up its wrong passwords."""
    since = datetime.now(timezone.utc) - WINDOW
    recent = db.select(db.func.count()).select_from(LoginFailure).where(LoginFailure.at >= since)
    account = db.session.execute(recent).scalar_one()
    mine = db.session.execute(recent.where(LoginFailure.client == client_id())).scalar_one()
    return mine >= CLIENT_LIMIT or account >= ACCOUNT_LIMIT


def record_failure() -> None:
    now = datetime.now(timezone.utc)
    db.session.execute(db.delete(LoginFailure).where(LoginFailure.at < now - WINDOW))
    db.session.add(LoginFailure(client=client_id(), at=now))
    db.session.commit()


def forget_failures() -> None:
    db.session.execute(db.delete(LoginFailure).where(LoginFailure.client == client_id()))
    db.session.commit()


def csrf_token() -> str:
    token = session.get(CSRF_KEY)
    if not token:
        token = session[CSRF_KEY] = secrets.token_urlsafe(32)
    return str(token)


def check_csrf() -> None:
    sent = request.form.get("csrf_token", "")
    expected = session.get(CSRF_KEY) or ""
    # As bytes: compare_digest refuses str with non-ASCII characters (a TypeError, a 500).
    if not expected or not hmac.compare_digest(str(sent).encode(), str(expected).encode()):
        abort(400, "This form expired or came from another site: reload the page and try again.")


def frame_headers(response: Response) -> Response:
    for name, value in FRAME_HEADERS.items():
        # The admin pages set a fuller policy of their own (which also forbids framing).
        response.headers.setdefault(name, value)
    return response
