"""A member's ``language``, ``interests`` and ``marketing_permissions`` on POST/PUT/PATCH.

They are checked before the member rules run, so a refused value changes nothing, and
applied once the rules accepted the call. Marketing permissions exist only on
GDPR-enabled audiences (the control API creates them, as Mailchimp's API cannot); a
member body entry is ``{"marketing_permission_id", "enabled"}`` and an id the audience
does not have is refused. Mailchimp's wording for that refusal, and whether it checks
``language`` against its list of codes, are not documented: this sandbox answers 400
"Invalid marketing permission ID: '<id>'." and stores any language string.
The old batch subscribe (``POST /lists/{id}``) does not apply them in this sandbox.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .errors import invalid_resource, schema_error
from .interests import parse_member_interests

if TYPE_CHECKING:
    from .state import Audience, Member


@dataclass
class ProfileChange:
    language: str | None = None
    interests: dict[str, bool] = field(default_factory=dict)
    permissions: dict[str, bool] = field(default_factory=dict)


def _permissions(audience: Audience, raw: object) -> dict[str, bool]:
    if raw is None:
        return {}
    if not isinstance(raw, list):
        raise schema_error("marketing_permissions", "Schema describes array.")
    found: dict[str, bool] = {}
    for index, item in enumerate(raw):
        pid = item.get("marketing_permission_id") if isinstance(item, dict) else None
        enabled = item.get("enabled") if isinstance(item, dict) else None
        if not isinstance(pid, str) or not pid:
            raise schema_error(
                f"marketing_permissions.item:{index}.marketing_permission_id",
                "This value should not be blank.",
            )
        if not isinstance(enabled, bool):
            raise schema_error(
                f"marketing_permissions.item:{index}.enabled", "Schema describes boolean."
            )
        if pid not in audience.marketing_permissions:
            raise invalid_resource(f"Invalid marketing permission ID: '{pid}'.")
        found[pid] = enabled
    return found


def parse(audience: Audience, body: object) -> ProfileChange:
    """Validate the profile parts of a member body (a non-object is left to the rules)."""
    if not isinstance(body, dict):
        return ProfileChange()
    language = body.get("language")
    if language is not None and not isinstance(language, str):
        raise schema_error("language", "Schema describes string.")
    return ProfileChange(
        language=language,
        interests=parse_member_interests(audience, body.get("interests")),
        permissions=_permissions(audience, body.get("marketing_permissions")),
    )


def apply(member: Member, change: ProfileChange, touch: bool = True) -> None:
    before: tuple[Any, ...] = (
        member.language,
        dict(member.interests),
        dict(member.marketing_permissions),
    )
    if change.language is not None:
        member.language = change.language
    # Rebound, not updated in place: new members share one frozen empty dict (state.py).
    if change.interests:
        member.interests = {**member.interests, **change.interests}
    if change.permissions:
        member.marketing_permissions = {**member.marketing_permissions, **change.permissions}
    if touch and (member.language, member.interests, member.marketing_permissions) != before:
        member.touch()
