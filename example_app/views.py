"""The shop's own pages: a signup form and the admin login."""

from __future__ import annotations

import hmac

from flask import (
    Blueprint,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from werkzeug.wrappers import Response

from flask_mcsync.signals import subscriber_changed, subscriber_signed_up

from .models import Customer, db
from .security import (
    TOO_MANY,
    check_csrf,
    forget_failures,
    login_paused,
    record_failure,
    safe_next,
)

NO_SECRET_KEY = (
    "This shop has no SECRET_KEY, so it cannot keep anyone logged in: set the SECRET_KEY"
    " environment variable to a long random string (python -c 'import secrets;"
    " print(secrets.token_hex(32))') and restart it."
)

bp = Blueprint("shop", __name__)

MAX_EMAIL = 254  # the longest address SMTP carries
MAX_NAME = 100  # the name columns' size


def _typed(value: str, limit: int) -> bool:
    """Fits its column and holds no control character (PostgreSQL refuses NUL)."""
    return len(value) <= limit and not any(ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0 for c in value)


@bp.get("/")
def index() -> str:
    return render_template("index.html", count=db.session.query(Customer).count())


@bp.post("/signup")
def signup() -> Response:
    email = request.form.get("email", "").strip()
    first_name = request.form.get("first_name", "").strip()
    last_name = request.form.get("last_name", "").strip()
    if "@" not in email or not _typed(email, MAX_EMAIL):
        flash("Please type your e-mail address.")
        return redirect(url_for("shop.index"))
    if not (_typed(first_name, MAX_NAME) and _typed(last_name, MAX_NAME)):
        flash(f"Please type your name (at most {MAX_NAME} characters).")
        return redirect(url_for("shop.index"))
    customer = Customer(
        email=email,
        first_name=first_name,
        last_name=last_name,
        newsletter=bool(request.form.get("newsletter")),
        # The language they browse the shop in: their newsletters come in it.
        language=request.accept_languages.best_match(["en", "fr"]) or "en",
    )
    db.session.add(customer)
    # Auto-sync: an outbox row joins this transaction; it is sent once the commit is done.
    subscriber_signed_up.send(current_app._get_current_object(), subscriber=customer)
    db.session.commit()
    flash(f"Welcome, {customer.first_name or customer.email}!")
    return redirect(url_for("shop.index"))


@bp.route("/login", methods=["GET", "POST"])
def login() -> str | Response | tuple[str, int]:
    if not current_app.secret_key:
        # Without a secret key a session cannot be signed, so nobody can log in.
        return render_template("login.html", error=NO_SECRET_KEY), 503
    if request.method == "POST":
        check_csrf()
        if login_paused():
            return render_template("login.html", error=TOO_MANY), 429
        expected = str(current_app.config["SHOP_ADMIN_PASSWORD"])
        typed = request.form.get("password", "")
        # As bytes: compare_digest refuses str with non-ASCII characters (a password "é").
        if hmac.compare_digest(typed.encode(), expected.encode()):
            forget_failures()
            session.clear()  # a fresh session (and CSRF token) for the logged-in admin
            session["shop_admin"] = True
            return redirect(safe_next(request.args.get("next")))
        record_failure()
        flash("Wrong password.")
    return render_template("login.html")


@bp.post("/logout")
def logout() -> Response:
    check_csrf()
    session.clear()
    return redirect(url_for("shop.index"))


@bp.route("/newsletter", methods=["GET", "POST"])
def newsletter() -> str | Response:
    """A customer subscribes or unsubscribes (what an account page would do)."""
    if request.method == "POST":
        email = request.form.get("email", "").strip()
        wanted = request.form.get("newsletter") == "1"
        if not _typed(email, MAX_EMAIL):
            flash("We do not know this address.")
            return redirect(url_for("shop.newsletter"))
        customers = db.session.scalars(
            db.select(Customer).where(db.func.lower(Customer.email) == email.lower())
        ).all()
        if not customers:
            flash("We do not know this address.")
            return redirect(url_for("shop.newsletter"))
        for customer in customers:
            customer.newsletter = wanted
        subscriber_changed.send(current_app._get_current_object(), email=email, newsletter=wanted)
        db.session.commit()
        flash("Subscribed to the newsletter." if wanted else "Unsubscribed from the newsletter.")
        return redirect(url_for("shop.newsletter"))
    return render_template("newsletter.html")
