"""Tags: a member's tags endpoint and the audience-wide tag ids.

In Mailchimp a tag is a static segment of the audience: its id is the segment's id, found
with ``GET /lists/{id}/tag-search`` or ``GET /lists/{id}/segments?type=static``. Members
get tags through ``POST .../members/{hash}/tags`` (``active`` adds, ``inactive`` removes;
204, no body) or in the ``tags`` (a list of names) of ``POST /lists/{id}/members``;
``PUT`` ignores ``tags``. Tag changes do not move ``last_changed`` and call no webhook
(neither is documented; chosen here). Names match exactly, case included (uncertain).
"""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING, Any

from .errors import method_not_allowed, not_found, schema_error
from .state import now_iso

if TYPE_CHECKING:
    from .state import Audience, Member

# Tag ids are unique in the account, like segment ids; the start is arbitrary.
_tag_ids = itertools.count(200001)


def tag_id(audience: Audience, name: str) -> int:
    """The audience's id for the tag ``name``, creating the tag on first use."""
    found = audience.tags.get(name)
    if found is None:
        found = audience.tags[name] = next(_tag_ids)
    return found


def add_tags(audience: Audience, member: Member, names: list[str]) -> None:
    have = {tag["name"] for tag in member.tags}
    stamp = now_iso()
    added = []
    for name in names:
        if name not in have:
            added.append({"id": tag_id(audience, name), "name": name, "date_added": stamp})
            have.add(name)
    if added:
        # Rebound, not appended: new members share one frozen empty list (state.py).
        member.tags = [*member.tags, *added]


def tags_on_create(body: object) -> list[str]:
    """The ``tags`` of a ``POST /lists/{id}/members`` body: a list of names."""
    raw = body.get("tags") if isinstance(body, dict) else None
    if raw is None:
        return []
    if not isinstance(raw, list) or not all(isinstance(t, str) for t in raw):
        raise schema_error("tags", "Schema describes array of strings.")
    return [name.strip() for name in raw if name.strip()]


def update_member_tags(audience: Audience, member: Member, body: object) -> None:
    """``POST .../members/{hash}/tags``: ``{"tags": [{"name", "status"}]}``."""
    raw = body.get("tags") if isinstance(body, dict) else None
    if not isinstance(raw, list):
        raise schema_error("tags", "This value should not be blank.")
    changes: list[tuple[str, bool]] = []
    for index, item in enumerate(raw):
        name = item.get("name") if isinstance(item, dict) else None
        status = item.get("status") if isinstance(item, dict) else None
        if not isinstance(name, str) or not name.strip():
            raise schema_error(f"tags.item:{index}.name", "This value should not be blank.")
        if status not in ("active", "inactive"):
            raise schema_error(
                f"tags.item:{index}.status", "Value must be one of: active, inactive."
            )
        changes.append((name.strip(), status == "active"))
    for name, active in changes:
        if active:
            add_tags(audience, member, [name])
        else:
            member.tags = [tag for tag in member.tags if tag["name"] != name]


def _page(items: list[Any], offset: int, count: int) -> list[Any]:
    return items[offset : offset + count]


def member_tags_page(member: Member, offset: int, count: int) -> dict[str, Any]:
    return {
        "tags": [dict(tag) for tag in _page(member.tags, offset, count)],
        "total_items": len(member.tags),
        "_links": [],
    }


def tag_search(audience: Audience, name: str) -> dict[str, Any]:
    """``GET /lists/{id}/tag-search?name=``: tags whose name contains ``name``."""
    wanted = name.lower()
    found = [
        {"id": tag_id_, "name": tag_name}
        for tag_name, tag_id_ in audience.tags.items()
        if wanted in tag_name.lower()
    ]
    return {"tags": found, "total_items": len(found)}


def _segment_json(audience: Audience, name: str, segment_id: int) -> dict[str, Any]:
    count = sum(
        1
        for member in audience.members.values()
        if member.status != "archived" and any(t["name"] == name for t in member.tags)
    )
    return {
        "id": segment_id,
        "name": name,
        "member_count": count,
        "type": "static",
        "created_at": audience.date_created,
        "updated_at": audience.date_created,
        "options": {},
        "list_id": audience.id,
        "_links": [],
    }


def segments(
    audience: Audience, method: str, rest: list[str], params: dict[str, str], page: tuple[int, int]
) -> tuple[int, dict[str, Any]]:
    """``GET /lists/{id}/segments[/{segment_id}]``: tags seen as static segments."""
    if method != "GET":
        raise method_not_allowed(["GET"])
    if rest:
        for name, segment_id in audience.tags.items():
            if len(rest) == 1 and rest[0] == str(segment_id):
                return 200, _segment_json(audience, name, segment_id)
        raise not_found()
    wanted_type = params.get("type") or "static"
    items = list(audience.tags.items()) if wanted_type == "static" else []
    offset, count = page
    return 200, {
        "segments": [_segment_json(audience, n, i) for n, i in _page(items, offset, count)],
        "list_id": audience.id,
        "total_items": len(items),
        "_links": [],
    }
