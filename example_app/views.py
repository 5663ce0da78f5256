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

bp = Blueprint("shop", __name__)


@bp.get("/")
def index() -> str:
    return render_template("index.html", count=db.session.query(Customer).count())


@bp.post("/signup")
def signup() -> Response:
    email = request.form.get("email", "").strip()
    if "@" not in email:
        flash("Please type your e-mail address.")
        return redirect(url_for("shop.index"))
    customer = Customer(
        email=email,
        first_name=request.form.get("first_name", "").strip(),
        last_name=request.form.get("last_name", "").strip(),
        newsletter=bool(request.form.get("newsletter")),
    )
    db.session.add(customer)
    # Auto-sync: an outbox row joins this transaction; it is sent once the commit is done.
    subscriber_signed_up.send(current_app._get_current_object(), subscriber=customer)
    db.session.commit()
    flash(f"Welcome, {customer.first_name or customer.email}!")
    return redirect(url_for("shop.index"))


@bp.route("/login", methods=["GET", "POST"])
def login() -> str | Response:
    if request.method == "POST":
        expected = str(current_app.config["SHOP_ADMIN_PASSWORD"])
        if hmac.compare_digest(request.form.get("password", ""), expected):
            session["shop_admin"] = True
            return redirect(request.args.get("next") or url_for("mcsync.settings_page"))
        flash("Wrong password.")
    return render_template("login.html")


@bp.post("/logout")
def logout() -> Response:
    session.pop("shop_admin", None)
    return redirect(url_for("shop.index"))


@bp.route("/newsletter", methods=["GET", "POST"])
def newsletter() -> str | Response:
    """A customer subscribes or unsubscribes (what an account page would do)."""
    if request.method == "POST":
        email = request.form.get("email", "").strip()
        wanted = request.form.get("newsletter") == "1"
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
