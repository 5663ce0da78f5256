"""Interest categories ("groups") and their interests, and members' ``interests``.

``/lists/{id}/interest-categories[/{cat}[/interests[/{id}]]]`` with GET, POST, PATCH and
DELETE as in Mailchimp. A member's ``interests`` is an object ``{interest_id: bool}``;
an id the audience does not have is refused with 400 "Invalid interest ID: '<id>'."
(Mailchimp's text, reported by integrations). Deleting a category or an interest takes
it off every member. ``subscriber_count`` is a string, as Mailchimp sends it.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .errors import invalid_resource, method_not_allowed, not_found, schema_error

if TYPE_CHECKING:
    from .state import Audience

CATEGORY_TYPES = ("checkboxes", "dropdown", "radio", "hidden")


@dataclass
class InterestCategory:
    id: str
    title: str
    type: str
    display_order: int

    def to_json(self, list_id: str) -> dict[str, Any]:
        return {
            "list_id": list_id,
            "id": self.id,
            "title": self.title,
            "display_order": self.display_order,
            "type": self.type,
            "_links": [],
        }


@dataclass
class Interest:
    id: str
    category_id: str
    name: str
    display_order: int


def _interest_json(audience: Audience, interest: Interest) -> dict[str, Any]:
    count = sum(
        1
        for m in audience.members.values()
        if m.status == "subscribed" and m.interests.get(interest.id)
    )
    return {
        "category_id": interest.category_id,
        "list_id": audience.id,
        "id": interest.id,
        "name": interest.name,
        "subscriber_count": str(count),
        "display_order": interest.display_order,
        "_links": [],
    }


def _object(body: object) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise schema_error("body", "Expected a JSON object.")
    return body


def _text(body: dict[str, Any], name: str, *, required: bool) -> str | None:
    value = body.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value.strip():
        raise schema_error(name, "This value should not be blank.")
    return value.strip()


def _category_type(body: dict[str, Any], *, required: bool) -> str | None:
    if body.get("type") is None and not required:
        return None
    value = body.get("type")
    if value not in CATEGORY_TYPES:
        raise schema_error("type", f"Value must be one of: {', '.join(CATEGORY_TYPES)}.")
    return str(value)


def _order(body: dict[str, Any], default: int) -> int:
    value = body.get("display_order", default)
    if not isinstance(value, int) or isinstance(value, bool):
        raise schema_error("display_order", "Schema describes integer.")
    return value


def _forget(audience: Audience, interest_ids: set[str]) -> None:
    for interest_id in interest_ids:
        audience.interests.pop(interest_id, None)
    for member in audience.members.values():
        for interest_id in interest_ids & member.interests.keys():
            del member.interests[interest_id]


def handle(
    audience: Audience,
    method: str,
    rest: list[str],
    params: dict[str, str],
    body: object,
    page: tuple[int, int],
) -> tuple[int, dict[str, Any] | None]:
    """``rest`` is the path after ``/lists/{id}/interest-categories``. Lock held."""
    offset, count = page
    if not rest:
        if method == "GET":
            wanted = params.get("type") or None
            found = [c for c in audience.interest_categories.values() if wanted in (None, c.type)]
            return 200, {
                "list_id": audience.id,
                "categories": [c.to_json(audience.id) for c in found[offset : offset + count]],
                "total_items": len(found),
                "_links": [],
            }
        if method != "POST":
            raise method_not_allowed(["GET", "POST"])
        data = _object(body)
        category = InterestCategory(
            id=secrets.token_hex(5),
            title=str(_text(data, "title", required=True)),
            type=str(_category_type(data, required=True)),
            display_order=_order(data, len(audience.interest_categories)),
        )
        audience.interest_categories[category.id] = category
        return 200, category.to_json(audience.id)
    category_or_none = audience.interest_categories.get(rest[0])
    if category_or_none is None:
        raise not_found()
    category = category_or_none
    if len(rest) == 1:
        if method == "GET":
            return 200, category.to_json(audience.id)
        if method == "DELETE":
            del audience.interest_categories[category.id]
            _forget(
                audience,
                {i.id for i in audience.interests.values() if i.category_id == category.id},
            )
            return 204, None
        if method != "PATCH":
            raise method_not_allowed(["GET", "PATCH", "DELETE"])
        data = _object(body)
        category.title = _text(data, "title", required=False) or category.title
        category.type = _category_type(data, required=False) or category.type
        category.display_order = _order(data, category.display_order)
        return 200, category.to_json(audience.id)
    if rest[1] != "interests" or len(rest) > 3:
        raise not_found()
    return _interests(audience, category, method, rest[2:], body, page)


def _interests(
    audience: Audience,
    category: InterestCategory,
    method: str,
    rest: list[str],
    body: object,
    page: tuple[int, int],
) -> tuple[int, dict[str, Any] | None]:
    offset, count = page
    mine = [i for i in audience.interests.values() if i.category_id == category.id]
    if not rest:
        if method == "GET":
            return 200, {
                "interests": [_interest_json(audience, i) for i in mine[offset : offset + count]],
                "list_id": audience.id,
                "category_id": category.id,
                "total_items": len(mine),
                "_links": [],
            }
        if method != "POST":
            raise method_not_allowed(["GET", "POST"])
        data = _object(body)
        name = str(_text(data, "name", required=True))
        if any(i.name == name for i in mine):
            # Mailchimp refuses a duplicate group name (wording not documented).
            raise invalid_resource(f'Cannot add "{name}" because it already exists on the list.')
        interest = Interest(secrets.token_hex(5), category.id, name, _order(data, len(mine)))
        audience.interests[interest.id] = interest
        return 200, _interest_json(audience, interest)
    interest_or_none = audience.interests.get(rest[0])
    if interest_or_none is None or interest_or_none.category_id != category.id:
        raise not_found()
    interest = interest_or_none
    if method == "GET":
        return 200, _interest_json(audience, interest)
    if method == "DELETE":
        _forget(audience, {interest.id})
        return 204, None
    if method != "PATCH":
        raise method_not_allowed(["GET", "PATCH", "DELETE"])
    data = _object(body)
    interest.name = _text(data, "name", required=False) or interest.name
    interest.display_order = _order(data, interest.display_order)
    return 200, _interest_json(audience, interest)


def parse_member_interests(audience: Audience, raw: object) -> dict[str, bool]:
    """Check a member body's ``interests`` before anything is changed."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        found = "array" if isinstance(raw, list) else type(raw).__name__
        raise schema_error("interests", f"Schema describes object, {found} found instead")
    for interest_id, value in raw.items():
        if interest_id not in audience.interests:
            raise invalid_resource(f"Invalid interest ID: '{interest_id}'.")
        if not isinstance(value, bool):
            raise schema_error(f"interests.{interest_id}", "Schema describes boolean.")
    return {str(k): bool(v) for k, v in raw.items()}
