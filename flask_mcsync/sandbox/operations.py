"""Routing of Marketing API calls (method + path) to the account state.

This is HTTP-free on purpose: the Flask view and the batch worker both call
``execute``, so a batch operation is handled exactly like the same direct request.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from . import events, list_resources, merge_fields_api, profile, tags, webhooks
from . import members as rules
from .batch_submit import batch_page, validate_operations
from .errors import ApiError, invalid_resource, method_not_allowed, not_found, too_many_requests
from .member_filters import member_page
from .merge_values import within_double_range
from .results import pack_operations
from .state import Audience, Batch, Member, SandboxState

MAX_PAGE = 1000
MAX_UNFINISHED_BATCHES = 500
# Distinguishes "body was not JSON" from "no body".
INVALID_JSON = object()


def _refuse_constant(name: str) -> object:
    raise ValueError(f"{name} is not JSON")


def _number(read: Any) -> Any:
    """``read`` (``float`` or ``int``) for ``json.loads``, refusing what no double holds."""

    def parse(text: str) -> float:
        number = read(text)  # int() refuses more than 4,300 digits itself
        if not within_double_range(number):
            raise ValueError("out of range")
        return number

    return parse


def parse_body(text: str) -> object:
    """A request body read as JSON, or :data:`INVALID_JSON`.

    Strict: Python's ``json`` also reads ``NaN``, ``Infinity`` and ``-Infinity``, which
    JSON (RFC 8259) does not have, and which ``json.dumps`` writes for a float that is
    not finite, and reads ``1e400`` as an infinity (and 400 digits as an ``int`` no
    double holds). Mailchimp's own parser is not documented; a client sending these gets
    a parse error here rather than a number Mailchimp may never accept
    (:func:`~.merge_values.within_double_range`).
    """
    try:
        return json.loads(
            text,
            parse_constant=_refuse_constant,
            parse_float=_number(float),
            parse_int=_number(int),
        )
    except ValueError:
        return INVALID_JSON


@dataclass
class Result:
    status: int
    body: dict[str, Any] | None
    headers: dict[str, str] = field(default_factory=dict)


def split_path(path: str) -> list[str]:
    """Segments after /3.0/; batch paths come as 'lists/..' or '/lists/..' alike."""
    path = path.split("?", 1)[0].strip("/")
    if path.startswith("3.0/") or path == "3.0":
        path = path[4:]
    return [segment for segment in path.split("/") if segment]


def route_kind(segments: list[str]) -> str:
    """A coarse name of the resource, for request statistics."""
    n = len(segments)
    head = segments[0] if segments else ""
    if n == 0:
        return "root"
    if head == "ping" and n == 1:
        return "ping"
    if head == "batches":
        return "batches" if n == 1 else "batch"
    if head == "lists":
        if n <= 2:
            return "lists" if n == 1 else "list"
        if segments[2] == "members":
            return "members" if n == 3 else "member"
        if segments[2] == "merge-fields":
            return "merge-fields"
    return "other"


def truthy(value: str | None) -> bool:
    # The official client sends Python's str(True), mailchimp3 whatever it was given.
    return value is not None and value.strip().lower() in ("true", "1", "yes")


def _int_param(params: dict[str, str], name: str, default: int) -> int:
    raw = params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise invalid_resource(f"The {name} parameter must be an integer.") from None
    if value < 0:
        raise invalid_resource(f"The {name} parameter must not be negative.")
    return value


Page = tuple[int, int]  # offset, count


def _page(params: dict[str, str], default_count: int) -> Page:
    # Mailchimp caps pages at 1000 items.
    count = min(_int_param(params, "count", default_count), MAX_PAGE)
    return _int_param(params, "offset", 0), count


def _allow(method: str, allowed: list[str]) -> None:
    if method not in allowed:
        raise method_not_allowed(allowed)


def _audience(state: SandboxState, list_id: str) -> Audience:
    audience = state.lists.get(list_id)
    if audience is None:
        raise not_found()
    return audience


def execute(
    state: SandboxState,
    method: str,
    path: str,
    params: dict[str, str],
    body: object,
    base_url: str,
) -> Result:
    """Run one API call against the state; errors come back as problem documents."""
    try:
        seg = split_path(path)
        if webhooks.needs_url_check(method.upper(), seg, body):
            webhooks.verify_url(body)  # a network call: never under the account lock
        with state.lock:
            result = _dispatch(state, method.upper(), seg, params, body, base_url)
    except ApiError as exc:
        return Result(exc.status, exc.body(), exc.headers)
    if result.body is not None and ("fields" in params or "exclude_fields" in params):
        result.body = filter_fields(
            result.body, params.get("fields", ""), params.get("exclude_fields", "")
        )
    return result


def _dispatch(
    state: SandboxState,
    method: str,
    seg: list[str],
    params: dict[str, str],
    body: object,
    base_url: str,
) -> Result:
    if body is INVALID_JSON and method in ("POST", "PUT", "PATCH"):
        raise ApiError(
            400, "JSON Parse Exception", "We encountered an unspecified JSON parsing error."
        )
    n = len(seg)
    if n == 0:
        _allow(method, ["GET"])
        return Result(
            200,
            {
                "account_id": "sandbox",
                "account_name": "Mailchimp sandbox",
                "email": "owner@sandbox.invalid",
                "total_subscribers": sum(a.counts()["subscribed"] for a in state.lists.values()),
                "_links": [],
            },
        )
    if seg == ["ping"]:
        _allow(method, ["GET"])
        return Result(200, {"health_status": "Everything's Chimpy!"})
    if seg[0] == "lists":
        return _lists(state, method, seg, params, body)
    if seg[0] == "batches" and n <= 2:
        return _batches(state, method, seg, body, base_url, page=_page(params, 10))
    raise not_found()


def _lists(
    state: SandboxState, method: str, seg: list[str], params: dict[str, str], body: object
) -> Result:
    n = len(seg)
    if n == 1:
        _allow(method, ["GET"])
        offset, count = _page(params, 10)
        audiences = list(state.lists.values())
        return Result(
            200,
            {
                "lists": [a.to_json() for a in audiences[offset : offset + count]],
                "total_items": len(audiences),
                "constraints": {
                    "may_create": False,
                    "max_instances": 1,
                    "current_total_instances": len(audiences),
                },
                "_links": [],
            },
        )
    audience = _audience(state, seg[1])
    skip = truthy(params.get("skip_merge_validation"))
    if n == 2:
        _allow(method, ["GET", "POST"])
        if method == "GET":
            return Result(200, audience.to_json())
        before = events.snapshot_many(audience, body)
        reply = rules.batch_subscribe(audience, body)
        events.api_changed_many(state, audience, before)
        return Result(200, reply)
    if seg[2] == "merge-fields" and n > 3:
        status, doc = merge_fields_api.handle(audience, method, seg[3:], body)
        return Result(status, doc)
    if seg[2] == "merge-fields" and n == 3:
        _allow(method, ["GET", "POST"])
        if method == "POST":
            return Result(200, merge_fields_api.create(audience, body).to_json(audience.id))
        offset, count = _page(params, 10)
        fields = audience.merge_fields
        return Result(
            200,
            {
                "merge_fields": [f.to_json(audience.id) for f in fields[offset : offset + count]],
                "list_id": audience.id,
                "total_items": len(fields),
                "_links": [],
            },
        )
    answer = list_resources.route(audience, method, seg[2:], params, body, _page(params, 10))
    if answer is not None:
        return Result(*answer)
    if seg[2] != "members":
        raise not_found()
    if n == 3:
        _allow(method, ["GET", "POST"])
        if method == "POST":
            member = _write_member(state, audience, method, None, body, skip)
            return Result(200, audience.member_json(member))
        offset, count = _page(params, 10)
        return Result(200, member_page(audience, params, offset, count))
    key = seg[3]
    if n == 4:
        _allow(method, ["GET", "PUT", "PATCH", "DELETE"])
        if method == "GET":
            member = rules.get_member(audience, key)
        elif method in ("PUT", "PATCH"):
            member = _write_member(state, audience, method, key, body, skip)
        else:
            rules.archive_member(audience, key)
            return Result(204, None)
        return Result(200, audience.member_json(member))
    if seg[4:] == ["actions", "delete-permanent"]:
        _allow(method, ["POST"])
        rules.delete_permanent(audience, key)
        return Result(204, None)
    raise not_found()


def _write_member(
    state: SandboxState,
    audience: Audience,
    method: str,
    key: str | None,
    body: object,
    skip: bool,
) -> Member:
    """POST, PUT or PATCH of one member, with its profile parts, tags and webhooks."""
    if key is None:
        address = body.get("email_address") if isinstance(body, dict) else None
        key = address if isinstance(address, str) else ""
    before = events.snapshot(rules.find_member(audience, key) if key else None)
    change = profile.parse(audience, body)  # refuses bad values before anything changes
    new_tags = tags.tags_on_create(body) if method == "POST" else []
    created = False
    if method == "POST":
        member, created = rules.add_member(audience, body, skip)
        tags.add_tags(audience, member, new_tags)
    elif method == "PUT":
        member, created = rules.upsert_member(audience, key, body, skip)
    else:
        member = rules.update_member(audience, key, body, skip)
    # A create is one change, stamped once: its language or interests must not move
    # last_changed past timestamp_opt when the clock ticks over mid-request (callers
    # read "changed after it opted in" as "existed before this write").
    profile.apply(member, change, touch=not created)
    events.api_changed(state, audience, before, member)
    return member


def _batches(
    state: SandboxState, method: str, seg: list[str], body: object, base_url: str, page: Page
) -> Result:
    if len(seg) == 1:
        _allow(method, ["GET", "POST"])
        if method == "GET":
            return Result(200, batch_page(state, *page))
        return Result(200, _submit_batch(state, body, base_url).to_json())
    batch = state.batches.get(seg[1])
    if batch is None:
        raise not_found()
    _allow(method, ["GET", "DELETE"])
    if method == "DELETE":
        del state.batches[batch.id]
        return Result(204, None)
    return Result(200, batch.to_json())


def _submit_batch(state: SandboxState, body: object, base_url: str) -> Batch:
    operations = validate_operations(body)
    if state.unfinished_batches() >= MAX_UNFINISHED_BATCHES:
        raise too_many_requests(f"You have more than {MAX_UNFINISHED_BATCHES} pending batches.", 60)
    batch = Batch(
        id=state.new_batch_id(),
        packed_operations=pack_operations(operations),
        total_operations=len(operations),
        base_url=base_url,
    )
    state.batches[batch.id] = batch
    state.batch_queued.set()
    return batch


def run_operation(state: SandboxState, op: dict[str, Any], base_url: str) -> dict[str, Any]:
    """Execute one batch operation and return its entry for the results archive."""
    raw_body = op.get("body")
    body: object = None
    # Submission already refused any body that is not a string.
    if isinstance(raw_body, str) and raw_body.strip():
        body = parse_body(raw_body)
    raw_params = op.get("params")
    params = {str(k): str(v) for k, v in raw_params.items()} if isinstance(raw_params, dict) else {}
    try:
        result = execute(state, str(op["method"]), str(op["path"]), params, body, base_url)
    except Exception as exc:  # one odd operation must not kill the worker thread
        error = ApiError(500, "Internal Server Error", f"The operation failed: {exc!r}")
        result = Result(500, error.body())
    return {
        "status_code": result.status,
        "operation_id": op.get("operation_id"),
        "response": "" if result.body is None else json.dumps(result.body),
    }


def filter_fields(doc: dict[str, Any], fields: str, exclude: str) -> dict[str, Any]:
    """Mailchimp's ``fields`` / ``exclude_fields``: comma-separated dotted paths."""
    if fields:
        doc = _keep(doc, [p.split(".") for p in fields.split(",") if p])
    if exclude:
        for path in (p.split(".") for p in exclude.split(",") if p):
            _drop(doc, path)
    return doc


def _keep(value: Any, paths: list[list[str]]) -> Any:
    if isinstance(value, list):
        return [_keep(item, paths) for item in value]
    if not isinstance(value, dict):
        return value
    kept: dict[str, Any] = {}
    for key, item in value.items():
        rests = [p[1:] for p in paths if p[0] == key]
        if not rests:
            continue
        kept[key] = item if any(not r for r in rests) else _keep(item, [r for r in rests if r])
    return kept


def _drop(value: Any, path: list[str]) -> None:
    if isinstance(value, list):
        for item in value:
            _drop(item, path)
    elif isinstance(value, dict) and path[0] in value:
        if len(path) == 1:
            del value[path[0]]
        else:
            _drop(value[path[0]], path[1:])
