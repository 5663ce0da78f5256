"""Member events and the webhook callbacks Mailchimp makes for them.

Changes come from three sources, which a webhook picks with its ``sources`` flags:
``user`` (the person: an unsubscribe link, the profile page), ``admin`` (someone in the
Mailchimp account) and ``api`` (calls to this API, direct or batched). Bounces are made
by Mailchimp itself and reach every webhook that wants ``cleaned``. An integration that
leaves ``api`` out therefore never hears the echo of its own writes.

Callbacks are ``application/x-www-form-urlencoded`` POSTs (User-Agent "MailChimp.com")
with ``type``, ``fired_at`` (``YYYY-MM-DD HH:MM:SS``, UTC here) and ``data[...]`` fields,
delivered by a background thread in the order the events happened; every attempt is
recorded (``/_sandbox/webhook-deliveries``) and a failing URL never undoes the event.

Uncertain, and chosen here (no public source found): the default ``unsubscribe_reason``
texts below; ``action=delete`` archives the contact; an address change sends only
``upemail`` (not also ``profile``); API-made archiving sends nothing; Mailchimp retries
failed deliveries, this sandbox does not.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import requests

from .compliance import enter_status
from .errors import ApiError
from .members import move_member
from .state import subscriber_hash

if TYPE_CHECKING:
    from .state import Audience, Member, SandboxState

DELIVERY_AGENT = "MailChimp.com"
DELIVERY_TIMEOUT = 10.0

# Text stored in the member's unsubscribe_reason for each kind of unsubscribe.
REASON_BY_CONTACT = "I no longer want to receive these emails"
REASON_BY_ADMIN = "N/A (Unsubscribed by an admin)"
REASON_BY_API = "N/A (Unsubscribed by API)"
REASON_ABUSE = "N/A (Abuse report)"


class EventError(ValueError):
    """A Mailchimp-side event that cannot happen to this member (control API: 400)."""


@dataclass
class Notification:
    """One event's callback, waiting for (or done with) delivery to its URLs."""

    list_id: str
    type: str
    source: str | None
    payload: list[tuple[str, str]]
    urls: list[str]
    # SandboxState.webhook_generation when queued: a reset since makes it stale.
    generation: int = 0
    done: threading.Event = field(default_factory=threading.Event)
    deliveries: list[dict[str, Any]] = field(default_factory=list)


def fired_at() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def _flatten(prefix: str, value: object) -> list[tuple[str, str]]:
    """PHP-style form keys: an address merge value becomes data[merges][ADDR][city]."""
    if isinstance(value, dict):
        pairs: list[tuple[str, str]] = []
        for key, item in value.items():
            pairs.extend(_flatten(f"{prefix}[{key}]", item))
        return pairs
    return [(prefix, "" if value is None else str(value))]


def _merges(audience: Audience, member: Member) -> dict[str, Any]:
    merges: dict[str, Any] = {"EMAIL": member.email_address}
    for definition in audience.merge_fields:
        merges[definition.tag] = member.merge_fields.get(definition.tag, "")
    if audience.interests:
        # Mailchimp sends group names, comma separated, not interest ids.
        names = [i.name for iid, i in audience.interests.items() if member.interests.get(iid)]
        merges["INTERESTS"] = ", ".join(names)
    return merges


def _member_data(audience: Audience, member: Member) -> list[tuple[str, str]]:
    return [
        ("data[id]", member.id),
        ("data[email]", member.email_address),
        ("data[email_type]", member.email_type),
        ("data[ip_opt]", member.ip_opt),
        ("data[web_id]", str(member.web_id)),
        *_flatten("data[merges]", _merges(audience, member)),
        ("data[list_id]", audience.id),
    ]


def _subscribe_data(audience: Audience, member: Member) -> list[tuple[str, str]]:
    return [*_member_data(audience, member), ("data[ip_signup]", member.ip_signup)]


def notify(
    state: SandboxState,
    audience: Audience,
    event: str,
    source: str | None,
    data: list[tuple[str, str]],
) -> Notification:
    """Queue the callback of one event to every webhook that wants it (lock held)."""
    urls = [hook.url for hook in audience.webhooks.values() if hook.wants(event, source)]
    note = Notification(
        list_id=audience.id,
        type=event,
        source=source,
        payload=[("type", event), ("fired_at", fired_at()), *data],
        urls=urls,
        generation=state.webhook_generation,
    )
    if urls:
        state.webhook_outbox.append(note)
        state.webhook_queued.set()
    else:
        note.done.set()
    return note


# --- Changes made in Mailchimp (fired through the control API) -----------------------


def _check_choice(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise EventError(f"{name} must be one of {', '.join(allowed)}, not {value!r}")


def unsubscribe(
    state: SandboxState,
    audience: Audience,
    member: Member,
    *,
    reason: str = "manual",
    action: str = "unsub",
    source: str = "user",
    campaign_id: str = "",
    unsubscribe_reason: str = "",
) -> Notification:
    """The person unsubscribes (source user), an admin does (admin), or a complaint.

    ``reason`` is ``manual`` or ``abuse`` (a spam complaint); ``action`` is ``unsub`` or
    ``delete`` (an admin deleting the contact, which Mailchimp now archives).
    """
    _check_choice("reason", reason, ("manual", "abuse"))
    _check_choice("action", action, ("unsub", "delete"))
    _check_choice("source", source, ("user", "admin"))
    if member.status in ("archived", "cleaned") or (
        action == "unsub" and member.status == "unsubscribed"
    ):
        raise EventError(f"{member.email_address} is {member.status}; nothing to unsubscribe")
    if action == "delete":
        member.set_status("archived")
    else:
        if reason == "abuse":
            by, text = "abuse", REASON_ABUSE
        else:
            by, text = source, REASON_BY_CONTACT if source == "user" else REASON_BY_ADMIN
        enter_status(audience, member, "unsubscribed", source=by)
        member.unsubscribe_reason = unsubscribe_reason or text
    data = [("data[action]", action), ("data[reason]", reason), *_member_data(audience, member)]
    if campaign_id:
        data.append(("data[campaign_id]", campaign_id))
    return notify(state, audience, "unsubscribe", source, data)


def confirm(
    state: SandboxState, audience: Audience, member: Member, *, ip_opt: str = ""
) -> Notification:
    """The person clicks the link in Mailchimp's confirmation e-mail: pending -> subscribed."""
    if member.status != "pending":
        raise EventError(f"{member.email_address} is {member.status}, not pending")
    enter_status(audience, member, "subscribed", source="")
    member.ip_opt = ip_opt or member.ip_opt
    return notify(state, audience, "subscribe", "user", _subscribe_data(audience, member))


def clean(
    state: SandboxState,
    audience: Audience,
    member: Member,
    *,
    reason: str = "hard",
    campaign_id: str = "",
) -> Notification:
    """A hard bounce (or an abuse report at the receiving end) cleans the address."""
    _check_choice("reason", reason, ("hard", "abuse"))
    if member.status in ("archived", "cleaned"):
        raise EventError(f"{member.email_address} is {member.status}; nothing to clean")
    enter_status(audience, member, "cleaned", source="")
    data = [("data[list_id]", audience.id)]
    if campaign_id:
        data.append(("data[campaign_id]", campaign_id))
    data += [("data[reason]", reason), ("data[email]", member.email_address)]
    return notify(state, audience, "cleaned", None, data)


def edit_profile(
    state: SandboxState,
    audience: Audience,
    member: Member,
    merge_fields: dict[str, Any],
    *,
    source: str = "user",
) -> Notification:
    """The person (or an admin) edits the contact's merge fields in Mailchimp."""
    _check_choice("source", source, ("user", "admin"))
    known = {definition.tag for definition in audience.merge_fields}
    unknown = sorted(set(merge_fields) - known)
    if unknown:
        raise EventError(f"the audience has no merge field {', '.join(unknown)}")
    member.merge_fields.update(merge_fields)
    member.touch()
    return notify(state, audience, "profile", source, _member_data(audience, member))


def change_address(
    state: SandboxState,
    audience: Audience,
    member: Member,
    new_email: str,
    *,
    source: str = "user",
) -> Notification:
    """The contact's address is changed in Mailchimp: its subscriber hash changes too."""
    _check_choice("source", source, ("user", "admin"))
    old_email = member.email_address
    try:
        move_member(audience, member, new_email)
    except ApiError as exc:
        raise EventError(exc.detail) from None
    member.touch()
    data = [
        ("data[list_id]", audience.id),
        ("data[new_id]", member.id),
        ("data[new_email]", new_email),
        ("data[old_email]", old_email),
    ]
    return notify(state, audience, "upemail", source, data)


# --- Changes made through the API -----------------------------------------------------


@dataclass
class Snapshot:
    """A member as it was before an API call, to tell which events the call made."""

    member: Member | None
    email: str = ""
    status: str = ""
    merges: dict[str, Any] = field(default_factory=dict)
    interests: dict[str, bool] = field(default_factory=dict)


def snapshot(member: Member | None) -> Snapshot:
    if member is None:
        return Snapshot(None)
    return Snapshot(
        member,
        member.email_address,
        member.status,
        dict(member.merge_fields),
        dict(member.interests),
    )


def snapshot_many(audience: Audience, body: object) -> list[tuple[str, Snapshot]]:
    """Snapshots of the members a batch subscribe (``POST /lists/{id}``) names."""
    raw = body.get("members") if isinstance(body, dict) else None
    found: list[tuple[str, Snapshot]] = []
    for item in raw if isinstance(raw, list) else []:
        address = item.get("email_address") if isinstance(item, dict) else None
        if isinstance(address, str):
            key = subscriber_hash(address)
            found.append((key, snapshot(audience.members.get(key))))
    return found


def api_changed_many(
    state: SandboxState, audience: Audience, before: list[tuple[str, Snapshot]]
) -> None:
    for key, snap in before:
        member = audience.members.get(key)
        if member is not None:
            api_changed(state, audience, snap, member)


def api_changed(
    state: SandboxState, audience: Audience, before: Snapshot, member: Member
) -> list[Notification]:
    """Callbacks (source ``api``) for what one API call did to ``member`` (lock held)."""
    notes: list[Notification] = []
    was = before.status if before.member is member else ""
    unsubscribed = member.status == "unsubscribed" and was != "unsubscribed"
    if unsubscribed:
        member.unsubscribe_reason = member.unsubscribe_reason or REASON_BY_API
    if not any(hook.sources.get("api") for hook in audience.webhooks.values()):
        return notes  # nobody listens to API changes: bulk exports build no payloads
    if unsubscribed:
        data = [("data[action]", "unsub"), ("data[reason]", "manual")]
        notes.append(
            notify(state, audience, "unsubscribe", "api", data + _member_data(audience, member))
        )
    elif member.status == "subscribed" and was in ("", "archived", "pending", "unsubscribed"):
        notes.append(notify(state, audience, "subscribe", "api", _subscribe_data(audience, member)))
    if before.member is member and before.email != member.email_address:
        data = [
            ("data[list_id]", audience.id),
            ("data[new_id]", member.id),
            ("data[new_email]", member.email_address),
            ("data[old_email]", before.email),
        ]
        notes.append(notify(state, audience, "upemail", "api", data))
    profile_changed = before.member is member and (
        before.merges != member.merge_fields or before.interests != member.interests
    )
    if profile_changed and member.status not in ("archived", "cleaned"):
        notes.append(notify(state, audience, "profile", "api", _member_data(audience, member)))
    return notes


# --- Delivery -------------------------------------------------------------------------


class WebhookDispatcher:
    """Delivers queued callbacks from a daemon thread, one event at a time, in order."""

    def __init__(self, state: SandboxState) -> None:
        self.state = state
        self._stop = threading.Event()
        self._session = requests.Session()
        self._thread = threading.Thread(target=self._run, name="sandbox-webhooks", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self.state.webhook_queued.set()
        if self._thread.is_alive():
            self._thread.join(timeout)
        self._session.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.state.webhook_queued.clear()
            with self.state.lock:
                # The note stays in the outbox until delivered, so settle() sees it.
                note = self.state.webhook_outbox[0] if self.state.webhook_outbox else None
            if note is None:
                self.state.webhook_queued.wait(0.5)
                continue
            for url in note.urls:
                note.deliveries.append(self._deliver(note, url))
            with self.state.lock:
                if note in self.state.webhook_outbox:
                    self.state.webhook_outbox.remove(note)
                if note.generation == self.state.webhook_generation:
                    self.state.webhook_deliveries.extend(note.deliveries)
            note.done.set()

    def _deliver(self, note: Notification, url: str) -> dict[str, Any]:
        record: dict[str, Any] = {
            "list_id": note.list_id,
            "type": note.type,
            "source": note.source,
            "url": url,
            "payload": dict(note.payload),
            "status_code": None,
            "error": None,
        }
        try:
            response = self._session.post(
                url,
                data=note.payload,
                headers={"User-Agent": DELIVERY_AGENT},
                timeout=DELIVERY_TIMEOUT,
            )
            record["status_code"] = response.status_code
        except requests.RequestException as exc:  # a dead receiver must not stop the rest
            record["error"] = f"{type(exc).__name__}: {exc}"
        return record


def settle(state: SandboxState, timeout: float = 30.0) -> bool:
    """Wait until every callback queued so far was delivered; False on timeout."""
    with state.lock:
        pending = list(state.webhook_outbox)
    deadline = time.monotonic() + timeout
    return all(note.done.wait(max(0.0, deadline - time.monotonic())) for note in pending)
