"""The sandbox's own control API under /_sandbox/ (no auth, JSON in and out).

Tests and the demo use it to shape the account (audiences, members in any status,
forgotten addresses, API keys), to inject faults and to read statistics. It also serves
batch result archives, which in real Mailchimp live on S3 behind a presigned URL.
"""

from __future__ import annotations

import inspect
import json
import uuid
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any, NoReturn

from flask import Blueprint, Response, abort, jsonify, request

from . import events
from .batches import archive_bytes
from .compliance import OPT_OUT_SOURCES
from .faults import FaultConfigError, Faults
from .members import find_member
from .results import ResultsGone
from .state import (
    STATUSES,
    Audience,
    Member,
    MergeField,
    SandboxState,
    now_iso,
    subscriber_hash,
)
from .tags import add_tags

_S3_EXPIRED = """<?xml version="1.0" encoding="UTF-8"?>
<Error><Code>AccessDenied</Code><Message>Request has expired</Message>\
<X-Amz-Expires>600</X-Amz-Expires><Expires>{stamp}</Expires><ServerTime>{stamp}</ServerTime>\
<RequestId>{rid}</RequestId><HostId>{rid}</HostId></Error>"""
_S3_MISSING = """<?xml version="1.0" encoding="UTF-8"?>
<Error><Code>NoSuchKey</Code><Message>The specified key does not exist.</Message>\
<Key>{key}</Key><RequestId>{rid}</RequestId><HostId>{rid}</HostId></Error>"""


def _fail(status: int, message: str) -> NoReturn:
    abort(Response(json.dumps({"error": message}), status=status, content_type="application/json"))


def _json_body() -> Any:
    body = request.get_json(silent=True)
    if body is None:
        _fail(400, "expected a JSON body")
    return body


def _merge_fields(raw: object) -> list[MergeField] | None:
    if raw is None:
        return None
    if not isinstance(raw, list):
        _fail(400, "merge_fields must be a list")
    fields: list[MergeField] = []
    for number, item in enumerate(raw, start=1):
        if not isinstance(item, dict) or not isinstance(item.get("tag"), str):
            _fail(400, "each merge field needs a tag")
        fields.append(
            MergeField(
                tag=item["tag"].upper(),
                name=str(item.get("name") or item["tag"]),
                merge_id=number,
                type=str(item.get("type") or "text"),
                required=bool(item.get("required", False)),
                default_value=str(item.get("default_value") or ""),
                options=dict(item.get("options") or {}),
            )
        )
    return fields


def _opt_out_source(item: dict[str, Any], status: str) -> str:
    # Seeded unsubscribed members left by themselves unless told otherwise: the common
    # case, and the one Mailchimp protects (compliance state).
    source = item.get("opt_out_source", "user" if status == "unsubscribed" else "")
    if source and source not in OPT_OUT_SOURCES:
        _fail(400, f"opt_out_source must be one of {', '.join(OPT_OUT_SOURCES)}")
    return str(source or "")


def _seed_history(member: Member, item: dict[str, Any]) -> None:
    """Seeded members may carry their history: last_changed, timestamp_opt, unsubscribed_at
    and unsubscribe_reason."""
    if "unsubscribe_reason" in item:
        member.unsubscribe_reason = str(item["unsubscribe_reason"] or "")
    for name in ("last_changed", "timestamp_opt", "unsubscribed_at"):
        if name in item:
            try:
                stamp = datetime.fromisoformat(str(item[name]))
            except ValueError:
                _fail(400, f"{name} must be an ISO 8601 time with an offset")
            if stamp.tzinfo is None:
                _fail(400, f"{name} must be an ISO 8601 time with an offset")
            utc = stamp.astimezone(timezone.utc).replace(microsecond=0)
            setattr(member, name, utc.isoformat())


def _seed(audience: Audience, items: list[Any]) -> dict[str, int]:
    """Insert or overwrite members as given: no validation, any status.

    ``opt_out_source`` says how an unsubscribed member left: "user" (themselves, the
    default), "admin", "api" or "abuse" (reported); see compliance.py.
    """
    created = updated = 0
    stamp = now_iso()
    for item in items:
        if not isinstance(item, dict) or not isinstance(item.get("email_address"), str):
            _fail(400, "each member needs an email_address")
        status = item.get("status", "subscribed")
        if status not in STATUSES:
            _fail(400, f"unknown status {status!r}")
        source = _opt_out_source(item, status)
        key = subscriber_hash(item["email_address"])
        merge = dict(item.get("merge_fields") or {})
        existing = audience.members.get(key)
        if existing is not None:
            existing.set_status(status)
            existing.opt_out_source = source
            if status == "unsubscribed":
                existing.unsubscribed_at = existing.last_changed
            existing.merge_fields.update(merge)
            existing.touch()
            _seed_history(existing, item)
            updated += 1
            continue
        audience.members[key] = Member(
            email_address=item["email_address"],
            status=status,
            merge_fields=merge,
            timestamp_signup=stamp,
            last_changed=stamp,
            timestamp_opt=stamp if status == "subscribed" else "",
            opt_out_source=source,
            unsubscribed_at=stamp if status == "unsubscribed" else "",
            language=str(item.get("language") or ""),
        )
        add_tags(audience, audience.members[key], [str(t) for t in item.get("tags") or []])
        _seed_history(audience.members[key], item)
        created += 1
    return {"created": created, "updated": updated}


def create_control_blueprint(state: SandboxState, faults: Faults) -> Blueprint:
    control = Blueprint("sandbox_control", __name__, url_prefix="/_sandbox")

    def audience_or_404(list_id: str) -> Audience:
        audience = state.lists.get(list_id)
        if audience is None:
            _fail(404, f"no list {list_id}")
        return audience

    def list_json(audience: Audience) -> dict[str, Any]:
        data = audience.to_json()
        data["merge_fields"] = [f.to_json(audience.id) for f in audience.merge_fields]
        data["forgotten_count"] = len(audience.forgotten)
        return data

    @control.post("/reset")
    def reset() -> Response:
        faults.clear()
        state.reset()
        return jsonify({"reset": True})

    @control.route("/lists", methods=["GET", "POST"])
    def lists() -> Response | tuple[Response, int]:
        if request.method == "GET":
            with state.lock:
                return jsonify({"lists": [list_json(a) for a in state.lists.values()]})
        body = _json_body()
        if not isinstance(body, dict) or not isinstance(body.get("name"), str):
            _fail(400, "a list needs a name")
        list_id = body.get("id")
        with state.lock:
            if list_id is not None and list_id in state.lists:
                _fail(400, f"list {list_id} already exists")
            audience = state.create_list(
                body["name"],
                _merge_fields(body.get("merge_fields")),
                list_id=None if list_id is None else str(list_id),
                double_optin=bool(body.get("double_optin", False)),
            )
            return jsonify(list_json(audience)), 201

    @control.route("/lists/<list_id>/members", methods=["GET", "POST"])
    def members(list_id: str) -> Response:
        if request.method == "GET":
            with state.lock:
                audience = audience_or_404(list_id)
                everything = {
                    "list_id": audience.id,
                    "members": [audience.member_json(m) for m in audience.members.values()],
                    "counts": audience.counts(),
                    "total_items": len(audience.members),
                }
            # Plain json.dumps: jsonify sorts keys, several times slower on 100k members.
            return Response(json.dumps(everything), content_type="application/json")
        body = _json_body()
        items = body.get("members") if isinstance(body, dict) else body
        if not isinstance(items, list):
            _fail(400, 'expected a list of members (or {"members": [...]})')
        with state.lock:
            return jsonify(_seed(audience_or_404(list_id), items))

    @control.get("/lists/<list_id>/members/<path:key>")
    def member(list_id: str, key: str) -> Response:
        with state.lock:
            audience = audience_or_404(list_id)
            found = find_member(audience, key)
            if found is None:
                _fail(404, f"no member {key} in list {list_id}")
            data = audience.member_json(found)
            data["opt_out_source"] = found.opt_out_source
            return jsonify(data)

    @control.get("/lists/<list_id>/confirmation-emails")
    def confirmation_emails(list_id: str) -> Response:
        """The confirmation e-mails Mailchimp would have sent (status pending), in order."""
        with state.lock:
            sent = audience_or_404(list_id).confirmation_emails
            return jsonify(
                {"confirmation_emails": [{"email_address": e, "sent_at": t} for e, t in sent]}
            )

    def fire(list_id: str, key: str, event: Callable[..., events.Notification]) -> Response:
        """Apply one Mailchimp-side event, then wait for its webhook callbacks."""
        body = request.get_json(silent=True) or {}
        if not isinstance(body, dict):
            _fail(400, "expected a JSON object")
        with state.lock:
            audience = audience_or_404(list_id)
            found = find_member(audience, key)
            if found is None:
                _fail(404, f"no member {key} in list {list_id}")
            try:
                note = event(audience, found, body)
            except (events.EventError, TypeError) as exc:
                _fail(400, str(exc))
            member_json = audience.member_json(found)
        # Outside the lock: a receiver may call the API back while handling the callback.
        note.done.wait(events.DELIVERY_TIMEOUT * (len(note.urls) + 1))
        return jsonify({"member": member_json, "deliveries": note.deliveries})

    def _text(body: dict[str, Any], name: str, default: str = "") -> str:
        value = body.get(name, default)
        if not isinstance(value, str):
            _fail(400, f"{name} must be a string")
        return value

    def _options(body: dict[str, Any], event: Callable[..., Any]) -> dict[str, str]:
        """The event's keyword options (all text) from the body, with the event's defaults."""
        return {
            p.name: _text(body, p.name, p.default)
            for p in inspect.signature(event).parameters.values()
            if p.kind is p.KEYWORD_ONLY
        }

    def _status_event(
        event: Callable[..., events.Notification],
    ) -> Callable[[str, str], Response]:
        """A route firing an event that takes nothing but its keyword options."""

        def view(list_id: str, key: str) -> Response:
            return fire(
                list_id,
                key,
                lambda audience, member, body: event(
                    state, audience, member, **_options(body, event)
                ),
            )

        return view

    # The person unsubscribes, confirms the opt-in e-mail, or the address bounces.
    for name, event in (
        ("unsubscribe", events.unsubscribe),
        ("confirm", events.confirm),
        ("clean", events.clean),
    ):
        control.add_url_rule(
            f"/lists/<list_id>/members/<key>/{name}", name, _status_event(event), methods=["POST"]
        )

    @control.post("/lists/<list_id>/members/<key>/profile")
    def profile(list_id: str, key: str) -> Response:
        def edit(audience: Audience, member: Member, body: dict[str, Any]) -> events.Notification:
            merge_fields = body.get("merge_fields")
            if not isinstance(merge_fields, dict):
                _fail(400, 'expected {"merge_fields": {...}}')
            return events.edit_profile(
                state, audience, member, merge_fields, **_options(body, events.edit_profile)
            )

        return fire(list_id, key, edit)

    @control.post("/lists/<list_id>/members/<key>/change-address")
    def change_address(list_id: str, key: str) -> Response:
        def change(audience: Audience, member: Member, body: dict[str, Any]) -> events.Notification:
            new_email = _text(body, "new_email")
            if "@" not in new_email:
                _fail(400, 'expected {"new_email": "..."}')
            return events.change_address(
                state, audience, member, new_email, **_options(body, events.change_address)
            )

        return fire(list_id, key, change)

    @control.route("/webhook-deliveries", methods=["GET", "DELETE"])
    def webhook_deliveries() -> Response:
        if request.method == "DELETE":
            events.settle(state)
            with state.lock:
                state.webhook_deliveries = []
            return jsonify({"deliveries": []})
        # By default, wait for callbacks still queued (e.g. from API calls just made).
        if request.args.get("settle", "1") != "0":
            events.settle(state)
        with state.lock:
            found = [
                d
                for d in state.webhook_deliveries
                if request.args.get("list_id") in (None, d["list_id"])
            ]
        return Response(json.dumps({"deliveries": found}), content_type="application/json")

    @control.route("/lists/<list_id>/marketing-permissions", methods=["GET", "POST"])
    def marketing_permissions(list_id: str) -> Response | tuple[Response, int]:
        """The audience's GDPR marketing permissions; adding one makes it GDPR-enabled."""
        new: tuple[str, str] | None = None
        if request.method == "POST":
            body = _json_body()
            text = body.get("text") if isinstance(body, dict) else None
            if not isinstance(text, str) or not text.strip():
                _fail(400, 'expected {"text": "...", "marketing_permission_id"?: "..."}')
            pid = body.get("marketing_permission_id") or uuid.uuid4().hex[:10]
            if not isinstance(pid, str):
                _fail(400, "marketing_permission_id must be a string")
            new = (pid, text.strip())
        with state.lock:
            audience = audience_or_404(list_id)
            if new is not None:
                audience.marketing_permissions[new[0]] = new[1]
            found = [
                {"marketing_permission_id": p, "text": t}
                for p, t in audience.marketing_permissions.items()
            ]
        return jsonify({"marketing_permissions": found}), 201 if request.method == "POST" else 200

    @control.post("/lists/<list_id>/forgotten")
    def forgotten(list_id: str) -> Response:
        body = _json_body()
        emails = body.get("emails") if isinstance(body, dict) else None
        if not isinstance(emails, list) or not all(isinstance(e, str) for e in emails):
            _fail(400, 'expected {"emails": [...]}')
        with state.lock:
            audience = audience_or_404(list_id)
            for email in emails:
                # Forgetting someone also removes them, as a permanent delete does.
                key = subscriber_hash(email)
                audience.members.pop(key, None)
                audience.forgotten.add(key)
            return jsonify({"forgotten": len(audience.forgotten)})

    @control.post("/keys")
    def keys() -> Response:
        body = _json_body()
        key = body.get("api_key") if isinstance(body, dict) else None
        if not isinstance(key, str) or not key:
            _fail(400, 'expected {"api_key": "..."}')
        with state.lock:
            state.keys.add(key)
            return jsonify({"keys": len(state.keys)})

    @control.route("/faults", methods=["GET", "POST", "DELETE"])
    def fault_settings() -> Response:
        if request.method == "DELETE":
            faults.clear()
        elif request.method == "POST":
            body = _json_body()
            if not isinstance(body, dict):
                _fail(400, "expected an object of fault settings")
            try:
                faults.configure(body)
            except FaultConfigError as exc:
                _fail(400, str(exc))
        return jsonify(faults.to_json())

    @control.get("/stats")
    def stats() -> Response:
        with state.lock:
            data = state.stats.to_json()
            data["in_flight"] = sum(state.in_flight.values())
            data["batches"] = {b.id: b.status for b in state.batches.values()}
            return jsonify(data)

    @control.post("/stats/reset")
    def reset_stats() -> Response:
        with state.lock:
            state.stats = type(state.stats)()
        return jsonify({"reset": True})

    @control.get("/batch-results/<batch_id>.tar.gz")
    def batch_results(batch_id: str) -> Response:
        rid = uuid.uuid4().hex[:16].upper()
        with state.lock:
            batch = state.batches.get(batch_id)
            finished = batch is not None and batch.status == "finished"
        if batch is None or not finished:
            return Response(
                _S3_MISSING.format(key=f"{batch_id}.tar.gz", rid=rid),
                status=404,
                content_type="application/xml",
            )
        expired = Response(
            _S3_EXPIRED.format(stamp=now_iso(), rid=rid),  # what an expired S3 URL answers
            status=403,
            content_type="application/xml",
        )
        if faults.results_expired(batch_id):
            batch.results.clear()  # gone for good, as on S3: its file goes too
            return expired
        try:
            return Response(archive_bytes(batch), content_type="application/x-gzip")
        except ResultsGone:
            return expired  # expired by another download since the check above

    return control
