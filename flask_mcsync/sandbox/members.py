"""Member rules of the emulated audience: validation, create, upsert, update, delete.

Both the direct API and batch operations go through these functions, so a batched
``PUT`` behaves exactly like a direct one. Callers hold ``SandboxState.lock``.
"""

from __future__ import annotations

import re
from typing import Any

from .compliance import change_status, enter_status, send_confirmation
from .errors import ApiError, invalid_resource, not_found, schema_error
from .merge_values import clean_merge_fields
from .state import (
    SETTABLE_STATUSES,
    Audience,
    Member,
    contact_id_for,
    now_iso,
    subscriber_hash,
)

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


def parse_status(
    body: dict[str, Any], key: str, allowed: tuple[str, ...] = SETTABLE_STATUSES
) -> str | None:
    value = body.get(key)
    if value is None:
        return None
    if value not in allowed:
        raise schema_error(key, f"Value must be one of: {', '.join(allowed)}.")
    return str(value)


def _require_object(body: object) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise schema_error("body", "Expected a JSON object.")
    return body


def find_member(audience: Audience, key: str) -> Member | None:
    """The member a path key names: subscriber hash, address or contact_id."""
    resolved = resolve_hash(key)
    member = audience.members.get(resolved)
    if member is not None or not _HASH_RE.match(key):
        return member
    alias = audience.contact_aliases.get(key.lower())
    if alias is not None:
        return audience.members.get(alias)
    member = audience.members.get(contact_id_for(key.lower()))
    return member if member is not None and member.contact_id == key.lower() else None


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
    merge = clean_merge_fields(audience, body.get("merge_fields"), current={}, skip_validation=skip)
    stamp = now_iso()
    member = Member(
        email_address=address,
        status=status,
        merge_fields=merge,
        timestamp_signup=str(body.get("timestamp_signup") or ""),
        last_changed=stamp,
        timestamp_opt=stamp if status == "subscribed" else "",
        ip_signup=str(body.get("ip_signup") or ""),
        email_type=str(body.get("email_type") or "html"),
    )
    if status == "unsubscribed":
        member.opt_out_source, member.unsubscribed_at = "api", stamp
    audience.members[key] = member
    if status == "pending":
        send_confirmation(audience, member)
    return member


def _unarchive(
    audience: Audience, member: Member, status: str, body: dict[str, Any], skip: bool
) -> None:
    # An explicit status brings an archived contact back; the whole record is checked.
    merge = clean_merge_fields(
        audience, body.get("merge_fields"), current=member.merge_fields, skip_validation=skip
    )
    _apply_merge(member, merge)
    enter_status(audience, member, status, source="api")


def get_member(audience: Audience, key: str) -> Member:
    member = find_member(audience, key)
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
        _unarchive(audience, existing, status, body, skip)
        return existing, False
    return _create(audience, address, status, body, skip), True


def upsert_member(audience: Audience, key: str, raw: object, skip: bool) -> tuple[Member, bool]:
    """PUT /lists/{id}/members/{hash}: create with status_if_new or update in place.

    ``email_address`` is needed only to create; when given it must match the key.
    An archived contact counts as existing: ``status_if_new`` leaves it archived (its
    merge fields are still updated), only an explicit ``status`` un-archives it.
    """
    body = _require_object(raw)
    member = find_member(audience, key)
    address: str | None = None
    if "email_address" in body or member is None:
        address = validate_email(body.get("email_address"))
        wanted = member.id if member is not None else resolve_hash(key)
        if subscriber_hash(address) != wanted:
            raise invalid_resource(
                f"The subscriber hash in the URL ({key}) does not belong to the email address "
                f"in the body ({address}); it must be the MD5 of the lower-cased address."
            )
    status_if_new = parse_status(body, "status_if_new")
    status = parse_status(body, "status")
    if member is None:
        initial = status_if_new or status
        if initial is None:
            raise schema_error(
                "status_if_new", "status_if_new or status is required to create a member."
            )
        assert address is not None
        return _create(audience, address, initial, body, skip), True
    if member.status == "archived" and status is not None:
        _unarchive(audience, member, status, body, skip)
        return member, False
    # Existing (or archived) member: status_if_new is ignored; only an explicit status moves it.
    merge = clean_merge_fields(
        audience, body.get("merge_fields"), current=member.merge_fields, skip_validation=skip
    )
    if status is not None:
        change_status(audience, member, status)
    _apply_merge(member, merge)
    return member, False


# PATCH's status enum in Mailchimp's API description has no "transactional".
PATCH_STATUSES = tuple(s for s in SETTABLE_STATUSES if s != "transactional")


def update_member(audience: Audience, key: str, raw: object, skip: bool) -> Member:
    """PATCH /lists/{id}/members/{hash}: the member must exist; may change address."""
    body = _require_object(raw)
    member = get_member(audience, key)
    status = parse_status(body, "status", PATCH_STATUSES)
    merge = clean_merge_fields(
        audience, body.get("merge_fields"), current=member.merge_fields, skip_validation=skip
    )
    if "email_address" in body:
        move_member(audience, member, validate_email(body["email_address"]))
    if status is not None:
        if member.status == "archived":
            enter_status(audience, member, status, source="api")
        else:
            change_status(audience, member, status)
    _apply_merge(member, merge)
    return member


def move_member(audience: Audience, member: Member, address: str) -> None:
    """Give a member a new address: its subscriber hash changes, its contact_id stays."""
    new_key, old_key = subscriber_hash(address), member.id
    if new_key != old_key:
        if new_key in audience.members:
            raise ApiError(400, "Member Exists", f"{address} is already a list member.")
        # Rebuild to keep the member at its place in the paging order.
        audience.members = {
            (new_key if k == old_key else k): v for k, v in audience.members.items()
        }
        # The contact_id stays the member's: pin it and remember where it points now.
        member.fixed_contact_id = member.contact_id
        audience.contact_aliases[member.contact_id] = new_key
        member.touch()
    member.email_address = address


def _apply_merge(member: Member, merge: dict[str, Any]) -> None:
    changed = {k: v for k, v in merge.items() if member.merge_fields.get(k) != v}
    if changed:
        member.merge_fields.update(changed)
        member.touch()


# Statuses Mailchimp refuses to archive (DELETE answers 405).
_NOT_ARCHIVABLE = ("cleaned", "pending", "archived")


def archive_member(audience: Audience, key: str) -> None:
    """DELETE: Mailchimp archives rather than deletes, and not every contact."""
    member = get_member(audience, key)
    if member.status in _NOT_ARCHIVABLE:
        raise ApiError(
            405,
            "Method Not Allowed",
            "This list member cannot be removed. Can not archive a contact that is "
            "bounced, pending or archived",
        )
    member.set_status("archived")


def delete_permanent(audience: Audience, key: str) -> None:
    member = get_member(audience, key)
    del audience.members[member.id]
    audience.contact_aliases.pop(member.contact_id, None)
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
                    audience,
                    entry.get("merge_fields"),
                    current=existing.merge_fields,
                    skip_validation=False,
                )
                # Unlike PUT, batch subscribe with update_existing really does move
                # unsubscribed people back to "subscribed" (no compliance check).
                if status is not None:
                    enter_status(audience, existing, status, source="api")
                _apply_merge(existing, merge)
                updated.append(audience.member_json(existing))
                continue
            if status is None:
                raise schema_error("status", "This value should not be blank.")
            if existing is not None:
                _unarchive(audience, existing, status, entry, False)
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
