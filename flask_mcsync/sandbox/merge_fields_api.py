"""``/lists/{id}/merge-fields``: list, create, read, update and delete merge fields.

Types are Mailchimp's: text, number, address, phone, email, date, birthday, zip,
imageurl, url, radio, dropdown. A tag is at most 10 characters (letters, digits, _),
upper-cased, unique in the audience; without one Mailchimp names it MMERGE<n>. The type
cannot be changed by PATCH. Error texts for a duplicate tag or a bad type are not
published: the ones here are plausible, not Mailchimp's own words.
"""

from __future__ import annotations

import re
from typing import Any

from .errors import SCHEMA_DETAIL, ApiError, invalid_resource, method_not_allowed, not_found
from .state import Audience, MergeField

TYPES = (
    "text",
    "number",
    "address",
    "phone",
    "email",
    "date",
    "birthday",
    "zip",
    "imageurl",
    "url",
    "radio",
    "dropdown",
)
_TAG_RE = re.compile(r"^[A-Z0-9_]{1,10}$")
_EDITABLE = (
    "name",
    "tag",
    "required",
    "default_value",
    "public",
    "display_order",
    "options",
    "help_text",
)


def _schema(field: str, message: str) -> ApiError:
    return invalid_resource(SCHEMA_DETAIL, [{"field": field, "message": message}])


def _find(audience: Audience, raw_id: str) -> MergeField:
    for definition in audience.merge_fields:
        if str(definition.merge_id) == raw_id:
            return definition
    raise not_found()


def _apply(audience: Audience, definition: MergeField, body: dict[str, Any]) -> None:
    """Validate every given attribute first, then change the field (all or nothing)."""
    changes: dict[str, Any] = {}
    if "name" in body:
        if not isinstance(body["name"], str) or not body["name"].strip():
            raise _schema("name", "This value should not be blank.")
        changes["name"] = body["name"].strip()
    if "tag" in body:
        tag = str(body["tag"] or "").strip().upper()
        if not _TAG_RE.match(tag):
            raise _schema("tag", "A tag is 1 to 10 letters, digits or underscores.")
        if any(f.tag == tag and f is not definition for f in audience.merge_fields):
            raise invalid_resource(
                f'A Merge Field with the tag "{tag}" already exists for this list.'
            )
        changes["tag"] = tag
    for name, kind in (("required", bool), ("public", bool), ("display_order", int)):
        if name in body:
            if not isinstance(body[name], kind):
                raise _schema(name, f"Schema describes {'boolean' if kind is bool else 'integer'}.")
            changes[name] = body[name]
    for name in ("default_value", "help_text"):
        if name in body:
            changes[name] = str(body[name] or "")
    if "options" in body:
        options = body["options"]
        if not isinstance(options, dict):
            raise _schema("options", "Schema describes object.")
        choices = options.get("choices")
        if choices is not None and not (
            isinstance(choices, list) and all(isinstance(c, str) for c in choices)
        ):
            raise _schema("options.choices", "Schema describes array of strings.")
        changes["options"] = {**definition.options, **options}
    for name, value in changes.items():
        setattr(definition, name, value)


def create(audience: Audience, raw: object) -> MergeField:
    body = raw if isinstance(raw, dict) else {}
    field_type = body.get("type")
    if field_type not in TYPES:
        raise _schema(
            "type", "Data does not match any of the enum values: " + ", ".join(TYPES) + "."
        )
    if not isinstance(body.get("name"), str) or not body["name"].strip():
        raise _schema("name", "This value should not be blank.")
    merge_id = max((f.merge_id for f in audience.merge_fields), default=0) + 1
    definition = MergeField(tag=f"MMERGE{merge_id}", name="", merge_id=merge_id, type=field_type)
    _apply(audience, definition, {k: v for k, v in body.items() if k in _EDITABLE})
    audience.merge_fields.append(definition)
    return definition


def handle(audience: Audience, method: str, rest: list[str], raw: object) -> tuple[int, Any]:
    """Single merge field calls (``rest`` = the path after merge-fields, never empty)."""
    if len(rest) != 1:
        raise not_found()
    definition = _find(audience, rest[0])
    if method == "GET":
        return 200, definition.to_json(audience.id)
    if method == "PATCH":
        body = raw if isinstance(raw, dict) else {}
        _apply(audience, definition, {k: v for k, v in body.items() if k in _EDITABLE})
        return 200, definition.to_json(audience.id)
    if method == "DELETE":
        audience.merge_fields.remove(definition)
        # Members keep no value for a field that no longer exists.
        for member in audience.members.values():
            member.merge_fields.pop(definition.tag, None)
        return 204, None
    raise method_not_allowed(["GET", "PATCH", "DELETE"])
