"""The "General settings" tab: Mailchimp connection, target audience, options, exclusions.

Forms post back and redirect (post/redirect/get) with a flash message; a form with a
mistake is shown again with the sentence beside the field and what was typed kept.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, flash, redirect, render_template, request, url_for
from werkzeug.wrappers import Response

from .. import connect, exclusions
from .. import settings as settings_mod
from ..app_state import state
from ..eligibility import tally
from ..errors import McSyncError
from ..i18n import gettext as _
from ..rules import CatchAllRule, InvalidRule, RuleKind
from .account import account_status

UNPROCESSABLE = 422  # the form was understood but a value cannot be used


def register(bp: Blueprint) -> None:
    bp.add_url_rule("/", "settings_page", settings_page, methods=["GET"])
    bp.add_url_rule("/settings", "save_settings", save_settings, methods=["POST"])
    bp.add_url_rule("/rules", "add_rule", add_rule, methods=["POST"])
    bp.add_url_rule("/rules/<int:rule_id>/delete", "remove_rule", remove_rule, methods=["POST"])


def settings_page() -> str:
    return _render()


def _render(
    form: dict[str, Any] | None = None,
    errors: dict[str, str] | None = None,
    rule_form: dict[str, str] | None = None,
    rule_error: str | None = None,
    catch_all: bool = False,
) -> str:
    ext = state()
    session = ext.session
    current = settings_mod.load(session, ext.config)
    account = account_status(ext)
    ruleset = exclusions.load_ruleset(session)
    counts: dict[int | None, int] | None = None
    count_error = None
    if ruleset:
        # One pass over the shop's addresses; only worth it when there are rules to count.
        try:
            counts = tally(session, ext.require_source(), ruleset).by_rule
        except McSyncError as exc:
            count_error = str(exc)
    session.commit()  # end the read transaction: no snapshot held between requests
    webhook = connect.status(ext)
    values = {
        "list_id": current.list_id,
        "double_optin": current.double_optin,
        "batch_size": current.batch_size,
        "auto_sync": current.auto_sync,
    }
    values.update(form or {})
    return render_template(
        "mcsync/settings.html",
        config=ext.config,
        current=current,
        account=account,
        webhook=webhook,
        values=values,
        errors=errors or {},
        rules=[(rule, (counts or {}).get(rule.id, 0)) for rule in ruleset.rules],
        counts_known=counts is not None,
        count_error=count_error,
        rule_kinds=list(RuleKind),
        rule_form=rule_form or {"kind": RuleKind.DOMAIN.value, "value": ""},
        rule_error=rule_error,
        catch_all=catch_all,
    )


def save_settings() -> Response | tuple[str, int]:
    ext = state()
    session = ext.session
    current = settings_mod.load(session, ext.config)
    form = request.form
    errors: dict[str, str] = {}
    values: dict[str, Any] = {
        "double_optin": bool(form.get("double_optin")),
        "auto_sync": bool(form.get("auto_sync")),
        "batch_size": form.get("batch_size", ""),
    }
    try:
        batch_size = settings_mod.check_batch_size(values["batch_size"], ext.config)
    except settings_mod.InvalidSetting as exc:
        errors["batch_size"] = str(exc)

    # The select is only shown when the audiences could be read; absent means "keep".
    list_id = form.get("list_id") or None
    list_name = None
    if list_id is not None:
        values["list_id"] = list_id
    if list_id is not None and list_id != current.list_id:
        account = account_status(ext)
        audience = account.audience(list_id)
        if account.error:
            errors["list_id"] = _(
                "The audience cannot be changed now. %(error)s", error=account.error
            )
        elif audience is None:
            errors["list_id"] = _(
                "The account has no audience %(id)r: pick one of the list.", id=list_id
            )
        else:
            list_name = str(audience["name"])
    if errors:
        return _render(form=values, errors=errors), UNPROCESSABLE

    updated = settings_mod.update(
        session,
        ext.config,
        list_id=list_id if list_name else None,
        list_name=list_name,
        double_optin=values["double_optin"],
        batch_size=batch_size,
        auto_sync=values["auto_sync"],
    )
    flash(_("Settings saved."), "success")
    if list_name:
        flash(
            _(
                "New target audience: %(name)s. Run a manual export to it (Users list"
                " synching); automatic synchronisation starts once it has completed.",
                name=updated.list_name,
            ),
            "info",
        )
    return redirect(url_for(".settings_page"))


def add_rule() -> Response | tuple[str, int]:
    ext = state()
    kind = request.form.get("kind", "")
    value = request.form.get("value", "")
    confirmed = bool(request.form.get("confirm_catch_all"))
    try:
        rule = exclusions.add_rule(ext.session, kind, value, allow_catch_all=confirmed)
    except CatchAllRule as exc:
        ext.session.rollback()
        page = _render(
            rule_form={"kind": kind, "value": value}, rule_error=str(exc), catch_all=True
        )
        return page, UNPROCESSABLE
    except InvalidRule as exc:
        ext.session.rollback()
        page = _render(rule_form={"kind": kind, "value": value}, rule_error=str(exc))
        return page, UNPROCESSABLE
    flash(_("Added the %(rule)s rule.", rule=rule.describe()), "success")
    return redirect(url_for(".settings_page", _anchor="rules"))


def remove_rule(rule_id: int) -> Response:
    if exclusions.remove_rule(state().session, rule_id):
        flash(_("Rule removed."), "success")
    else:
        flash(_("That rule was already removed."), "info")
    return redirect(url_for(".settings_page", _anchor="rules"))
