"""Admin blueprint (pages are being built)."""

from __future__ import annotations

from flask import Blueprint

from .security import check_access, check_csrf


def make_blueprint() -> Blueprint:
    bp = Blueprint("mcsync", __name__, template_folder="../templates")
    bp.before_request(check_access)
    bp.before_request(check_csrf)

    @bp.get("/")
    def settings_page() -> str:
        return "settings"

    return bp
