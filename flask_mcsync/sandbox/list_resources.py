"""Routing of an audience's sub-resources other than members and merge fields.

``/lists/{id}/webhooks``, ``/interest-categories``, ``/tag-search``, ``/segments`` and
``/members/{hash}/tags``; each resource's rules live in its own module.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from . import interests, tags, webhooks
from .errors import method_not_allowed
from .members import get_member

if TYPE_CHECKING:
    from .state import Audience

Answer = tuple[int, dict[str, Any] | None]


def route(
    audience: Audience,
    method: str,
    rest: list[str],
    params: dict[str, str],
    body: object,
    page: tuple[int, int],
) -> Answer | None:
    """Answer a call under ``/lists/{id}/`` (``rest`` follows the id), or None if not ours."""
    head = rest[0] if rest else ""
    if head == "webhooks":
        return webhooks.handle(audience, method, rest[1:], body)
    if head == "interest-categories":
        return interests.handle(audience, method, rest[1:], params, body, page)
    if rest == ["tag-search"]:
        if method != "GET":
            raise method_not_allowed(["GET"])
        return 200, tags.tag_search(audience, params.get("name", ""))
    if head == "segments":
        return tags.segments(audience, method, rest[1:], params, page)
    if head == "members" and len(rest) == 3 and rest[2] == "tags":
        member = get_member(audience, rest[1])
        if method == "GET":
            return 200, tags.member_tags_page(member, *page)
        if method != "POST":
            raise method_not_allowed(["GET", "POST"])
        tags.update_member_tags(audience, member, body)
        return 204, None
    return None
