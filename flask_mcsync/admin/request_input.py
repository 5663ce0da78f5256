"""The admin pages' input checks, run before any view: ids in the path, text in forms.

Each check calls :mod:`flask_mcsync.inputs` (the same rules as the CLI), so a view only
ever sees an id the database can hold and text without control characters. What fails
answers 404 (an id in the path: there is no such row) or 400 (a form or query value),
with the sentence saying what is accepted, before anything is read or changed.
"""

from __future__ import annotations

from typing import Any

from flask import abort, request

from ..i18n import N_
from ..i18n import gettext as _
from ..inputs import InvalidInput, row_id, text

# Names of path and query values, as the sentences call them.
NOUNS = {
    "run_id": N_("run number"),
    "rule_id": N_("rule number"),
    "run": N_("run number"),
    "page": N_("page"),
}


def check_request() -> None:
    """Run after access and CSRF checks, so a stranger learns nothing from the answer."""
    _check_path_ids(request.view_args)
    _check_text()


def _check_path_ids(values: dict[str, Any] | None) -> None:
    """``<int:..._id>`` path values beyond the id column: 404, the row cannot exist."""
    for name, value in (values or {}).items():
        if name.endswith("_id"):
            try:
                row_id(value, _(NOUNS.get(name, name)))
            except InvalidInput as exc:
                abort(404, str(exc))


def _check_text() -> None:
    """Every query and form value is text without control characters, or the request is 400."""
    for source, where in (
        (request.args, N_("%(name)r value in the address bar")),
        (request.form, N_("%(name)r value in the form")),
    ):
        for name, value in source.items(multi=True):
            try:
                text(value, _(where, name=name))
            except InvalidInput as exc:
                abort(400, str(exc))


def query_id(name: str) -> int | None:
    """An optional id or page number from the query string; 400 when it is not one."""
    raw = request.args.get(name, "").strip()
    if not raw:
        return None
    try:
        return row_id(raw, _(NOUNS.get(name, name)))
    except InvalidInput as exc:
        abort(400, str(exc))
