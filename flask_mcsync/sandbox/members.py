"""Member rules of the emulated audience: validation, create, upsert, update, delete.

Both the direct API and batch operations go through these functions, so a batched
``PUT`` behaves exactly like a direct one. Callers hold ``SandboxState.lock``.
"""

from __future__ import annotations

import re
from typing import Any

from .errors import ApiError, invalid_resource, not_found, schema_error
from .state import SETTABLE_STATUSES, Audience, Member, now_iso, subscriber_hash

# Deliberately close to what Mailchimp accepts: ASCII local part with the usual
# specials, dotted domain with a letters-only TLD.
_EMAIL_RE = re.compile(
    r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}$"
)
_FAKE_DOMAINS = ("example.com", "example.org", "example.net", "test.com")
_FAKE_TLDS = (".test", ".invalid", ".example")
_FAKE_LOCALS = ("test", "fake")
_HASH_RE = re.compile(r"^[0-9a-fA-F]{32}$")

BATCH_SUBSCRIBE_LIMIT = 500


def resolve_hash(key: str) -> str:
    """The API takes either the subscriber hash or the address itself in the path."""
    if _HASH_RE.match(key):
        return key.lower()
    return subscriber_hash(key)


def validate_email(value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise schema_error("email_address", "This value should not be blank.")
    address = value.strip()
    if len(address) > 254 or not _EMAIL_RE.match(address):
        raise invalid_resource("Please provide a valid email address.")
    local, domain = address.lower().rsplit("@", 1)
    fake_domain = any(domain == d or domain.endswith("." + d) for d in _FAKE_DOMAINS)
    if fake_domain or domain.endswith(_FAKE_TLDS) or local in _FAKE_LOCALS:
        raise invalid_resource(
            f"{address} looks fake or invalid, please enter a real email address."
        )
    return address


def parse_status(body: dict[str, Any], key: str) -> str | None:
    value = body.get(key)
    if value is None:
        return None
    if value not in SETTABLE_STATUSES:
        raise schema_error(key, f"Value must be one of: {', '.join(SETTABLE_STATUSES)}.")
    return str(value)


def clean_merge_fields(
    audience: Audience, values: object, *, new: bool, skip_validation: bool
) -> dict[str, Any]:
    """Check merge field values against the audience's definitions.

    Unknown tags are dropped, as Mailchimp does. Required fields are enforced on new
    members (unless skip_merge_validation) and whenever a request blanks one out.
    """
    if values is None:
        values = {}
    if not isinstance(values, dict):
        raise schema_error("merge_fields", "Expected an object.")
    cleaned: dict[str, Any] = {}
    errors: list[dict[str, str]] = []
    for definition in audience.merge_fields:
        present = definition.tag in values
        value = values.get(definition.tag)
        blank = value is None or (isinstance(value, str) and not value.strip())
        if definition.required and not skip_validation and blank and (new or present):
            errors.append({"field": definition.tag, "message": "Please enter a value"})
            continue
        if not present:
            continue
        if definition.type == "number" and not blank:
            try:
                float(value)  # type: ignore[arg-type]
            except (TypeError, ValueError):
                errors.append({"field": definition.tag, "message": "Please enter a number"})
                continue
        cleaned[definition.tag] = "" if value is None else value
    if errors:
        raise invalid_resource("Your merge fields were invalid.", errors)
    return cleaned


def change_status(member: Member, target: str) -> None:
    """Apply a status change the way Mailchimp's compliance rules allow it."""
    blocked = (target == "subscribed" and member.status in ("unsubscribed", "cleaned")) or (
        target == "pending" and member.status == "cleaned"
    )
    if blocked:
        raise ApiError(
            400,
            "Member In Compliance State",
            f"{member.email_address} is in a compliance state due to unsubscribe, bounce, "
            "or compliance review and cannot be subscribed.",
        )
    member.set_status(target)


def _require_object(body: object) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise schema_error("body", "Expected a JSON object.")
    return body


def _create(
    audience: Audience, address: str, status: str, body: dict[str, Any], skip: bool
) -> Member:
    key = subscriber_hash(address)
    if key in audience.forgotten:
        raise ApiError(
            400,
            "Forgotten Email Not Subscribed",
            f"{address} was permanently deleted and cannot be re-imported. The contact must "
            "re-subscribe to get back on the list.",
        )
    merge = clean_merge_fields(audience, body.get("merge_fields"), new=True, skip_validation=skip)
    stamp = now_iso()
    tags = [str(t) for t in body.get("tags") or [] if isinstance(t, str)]
    member = Member(
        email_address=address,
        status=status,
        merge_fields=merge,
        timestamp_signup=str(body.get("timestamp_signup") or ""),
        last_changed=stamp,
        timestamp_opt=stamp if status == "subscribed" else "",
        ip_signup=str(body.get("ip_signup") or ""),
        email_type=str(body.get("email_type") or "html"),
        language=str(body.get("language") or ""),
        tags=[{"id": i + 1, "name": name} for i, name in enumerate(tags)],
    )
    audience.members[key] = member
    return member


def _revive(
    audience: Audience, member: Member, status: str, body: dict[str, Any], skip: bool
) -> None:
    # An archived contact comes back like a new one: status_if_new applies and the
    # required merge fields are checked again.
    merge = clean_merge_fields(audience, body.get("merge_fields"), new=True, skip_validation=skip)
    member.merge_fields.update(merge)
    member.set_status(status)


def get_member(audience: Audience, key: str) -> Member:
    member = audience.members.get(resolve_hash(key))
    if member is None:
        raise not_found()
    return member


def add_member(audience: Audience, raw: object, skip: bool) -> tuple[Member, bool]:
    """POST /lists/{id}/members. Returns the member and whether it is new."""
    body = _require_object(raw)
    address = validate_email(body.get("email_address"))
    status = parse_status(body, "status")
    if status is None:
        raise schema_error("status", "This value should not be blank.")
    existing = audience.members.get(subscriber_hash(address))
    if existing is not None and existing.status != "archived":
        raise ApiError(
            400,
            "Member Exists",
            f"{address} is already a list member. Use PUT to insert or update list members.",
        )
    if existing is not None:
        _revive(audience, existing, status, body, skip)
        return existing, False
    return _create(audience, address, status, body, skip), True


def upsert_member(audience: Audience, key: str, raw: object, skip: bool) -> tuple[Member, bool]:
    """PUT /lists/{id}/members/{hash}: create with status_if_new or update in place."""
    body = _require_object(raw)
    address = validate_email(body.get("email_address"))
    path_hash = resolve_hash(key)
    if subscriber_hash(address) != path_hash:
        raise invalid_resource(
            f"The subscriber hash in the URL ({key}) does not belong to the email address "
            f"in the body ({address}); it must be the MD5 of the lower-cased address."
        )
    status_if_new = parse_status(body, "status_if_new")
    status = parse_status(body, "status")
    member = audience.members.get(path_hash)
    if member is None or member.status == "archived":
        initial = status_if_new or status
        if initial is None:
            raise schema_error(
                "status_if_new", "status_if_new or status is required to create a member."
            )
        if member is not None:
            _revive(audience, member, initial, body, skip)
            return member, False
        return _create(audience, address, initial, body, skip), True
    # Existing member: status_if_new is ignored; only an explicit status moves it.
    merge = clean_merge_fields(audience, body.get("merge_fields"), new=False, skip_validation=skip)
    if status is not None:
        change_status(member, status)
    _apply_merge(member, merge)
    if body.get("language"):
        member.language = str(body["language"])
    return member, False


def update_member(audience: Audience, key: str, raw: object, skip: bool) -> Member:
    """PATCH /lists/{id}/members/{hash}: the member must exist; may change address."""
    body = _require_object(raw)
    member = get_member(audience, key)
    status = parse_status(body, "status")
    merge = clean_merge_fields(audience, body.get("merge_fields"), new=False, skip_validation=skip)
    if "email_address" in body:
        address = validate_email(body["email_address"])
        new_key, old_key = subscriber_hash(address), member.id
        if new_key != old_key:
            if new_key in audience.members:
                raise ApiError(400, "Member Exists", f"{address} is already a list member.")
            # Rebuild to keep the member at its place in the paging order.
            audience.members = {
                (new_key if k == old_key else k): v for k, v in audience.members.items()
            }
        member.email_address = address
    if status is not None:
        change_status(member, status)
    _apply_merge(member, merge)
    return member


def _apply_merge(member: Member, merge: dict[str, Any]) -> None:
    changed = {k: v for k, v in merge.items() if member.merge_fields.get(k) != v}
    if changed:
        member.merge_fields.update(changed)
        member.last_changed = now_iso()


def archive_member(audience: Audience, key: str) -> None:
    """DELETE: Mailchimp archives rather than deletes."""
    get_member(audience, key).set_status("archived")


def delete_permanent(audience: Audience, key: str) -> None:
    member = get_member(audience, key)
    del audience.members[member.id]
    audience.forgotten.add(member.id)


def batch_subscribe(audience: Audience, raw: object) -> dict[str, Any]:
    """POST /lists/{id}: the old bulk endpoint; partial success is still a 200."""
    body = _require_object(raw)
    members = body.get("members")
    if not isinstance(members, list):
        raise schema_error("members", "This value should not be blank.")
    if len(members) > BATCH_SUBSCRIBE_LIMIT:
        raise invalid_resource(
            f"You can only subscribe up to {BATCH_SUBSCRIBE_LIMIT} members per request; "
            f"{len(members)} were sent."
        )
    update_existing = body.get("update_existing") is True
    created: list[dict[str, Any]] = []
    updated: list[dict[str, Any]] = []
    errors: list[dict[str, Any]] = []
    for item in members:
        address = str(item.get("email_address", "")) if isinstance(item, dict) else ""
        try:
            entry = _require_object(item)
            address = validate_email(entry.get("email_address"))
            status = parse_status(entry, "status") or parse_status(entry, "status_if_new")
            existing = audience.members.get(subscriber_hash(address))
            if existing is not None and existing.status != "archived":
                if not update_existing:
                    errors.append(
                        {
                            "email_address": address,
                            "error": f"{address} is already a list member, do you want to update? "
                            "please provide update_existing:true in the request body",
                            "error_code": "ERROR_CONTACT_EXISTS",
                            "field": "email_address",
                            "field_message": "",
                        }
                    )
                    continue
                merge = clean_merge_fields(
                    audience, entry.get("merge_fields"), new=False, skip_validation=False
                )
                # Unlike PUT, batch subscribe with update_existing really does move
                # unsubscribed people back to "subscribed" (no compliance check).
                if status is not None:
                    existing.set_status(status)
                _apply_merge(existing, merge)
                updated.append(audience.member_json(existing))
                continue
            if status is None:
                raise schema_error("status", "This value should not be blank.")
            if existing is not None:
                _revive(audience, existing, status, entry, False)
                member = existing
            else:
                member = _create(audience, address, status, entry, False)
            created.append(audience.member_json(member))
        except ApiError as exc:
            first = (exc.errors or [{}])[0]
            errors.append(
                {
                    "email_address": address,
                    "error": exc.detail,
                    "error_code": "ERROR_GENERIC",
                    "field": first.get("field", "email_address" if not exc.errors else ""),
                    "field_message": first.get("message", ""),
                }
            )
    return {
        "new_members": created,
        "updated_members": updated,
        "errors": errors,
        "total_created": len(created),
        "total_updated": len(updated),
        "error_count": len(errors),
        "_links": [],
    }
