"""The emulated Marketing API: HTTP concerns around ``operations.execute``.

Per request, in this order (each step can answer on its own): statistics, API key
(401), the 10-connections-per-key limit (429), injected latency, injected faults,
then the call itself. The connection limit is counted before the latency so that a
test can make requests overlap just by setting a latency.
"""

from __future__ import annotations

import base64
import binascii
import json
import socket
from collections.abc import Iterator
from contextlib import contextmanager, suppress

from flask import Blueprint, Response, g, request

from .errors import PROBLEM_CONTENT_TYPE, TOO_MANY_CONNECTIONS, ApiError, too_many_requests
from .faults import Faults, injected_error, signup_limit_error
from .operations import Result, execute, parse_body, route_kind, split_path
from .state import SandboxState

MAX_CONNECTIONS_PER_KEY = 10
_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"]


def api_key_from_header(header: str | None) -> str | None:
    """The key from Basic auth (password part) or from an apikey/Bearer/OAuth token."""
    if not header:
        return None
    scheme, _, value = header.strip().partition(" ")
    value = value.strip()
    if scheme.lower() == "basic":
        try:
            decoded = base64.b64decode(value, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return None
        return decoded.partition(":")[2] or None
    if scheme.lower() in ("apikey", "bearer", "oauth"):
        return value or None
    return None


def problem_response(error: ApiError) -> Response:
    response = Response(
        json.dumps(error.body()), status=error.status, content_type=PROBLEM_CONTENT_TYPE
    )
    for name, value in error.headers.items():
        response.headers[name] = value
    return response


def _json_response(result: Result) -> Response:
    if result.status >= 400:
        response = Response(
            json.dumps(result.body), status=result.status, content_type=PROBLEM_CONTENT_TYPE
        )
    elif result.body is None:
        response = Response(status=result.status)
    else:
        response = Response(
            json.dumps(result.body),
            status=result.status,
            content_type="application/json; charset=utf-8",
        )
    for name, value in result.headers.items():
        response.headers[name] = value
    return response


def _drop_connection() -> None:
    """Close the client's socket so it gets no HTTP response at all.

    Werkzeug then fails to write the response, treats it as a dropped connection and
    moves on; the client sees a reset / remote-disconnected error.
    """
    sock = request.environ.get("werkzeug.socket")
    if isinstance(sock, socket.socket):
        with suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)


def create_api_blueprint(state: SandboxState, faults: Faults) -> Blueprint:
    api = Blueprint("mailchimp_api", __name__, url_prefix="/3.0")

    def authenticate() -> str:
        key = api_key_from_header(request.headers.get("Authorization"))
        if key is None:
            raise ApiError(401, "API Key Missing", "Your request did not include an API key.")
        with state.lock:
            known = key in state.keys
        if not known:
            raise ApiError(
                401,
                "API Key Invalid",
                "Your API key may be invalid, or you've attempted to access the wrong datacenter.",
            )
        return key

    @contextmanager
    def connection_slot(key: str) -> Iterator[None]:
        with state.lock:
            if state.in_flight[key] >= MAX_CONNECTIONS_PER_KEY:
                state.stats.too_many_requests_sent += 1
                raise too_many_requests(TOO_MANY_CONNECTIONS, faults.retry_after)
            state.in_flight[key] += 1
            state.stats.max_in_flight = max(
                state.stats.max_in_flight, sum(state.in_flight.values())
            )
        try:
            yield
        finally:
            with state.lock:
                state.in_flight[key] -= 1
                if state.in_flight[key] <= 0:
                    del state.in_flight[key]

    def request_body() -> object:
        if not request.get_data(cache=True):
            return None
        return parse_body(request.get_data(as_text=True))

    def call(subpath: str) -> Response:
        key = authenticate()
        with connection_slot(key):
            # Taken before any setting is read: a test that clears the faults once it
            # sees this request in flight wakes it, wherever it then sleeps.
            wake = faults.hold()
            faults.sleep(faults.latency_ms / 1000.0, wake)
            decision = faults.decide(request.method, request.path)
            if decision is not None and decision.kind == "drop":
                _drop_connection()
                g.sandbox_dropped = True
                return Response(status=500)  # never reaches the client
            if decision is not None and decision.kind == "timeout":
                # The call still happens afterwards, as on a slow server: a client that
                # timed out cannot know whether its write was applied.
                faults.sleep(faults.timeout_seconds, wake)
            elif decision is not None and decision.kind == "empty_403":
                # Seen at very high volume: a 403 with no JSON (no body at all).
                return Response(b"", status=403, content_type="text/html; charset=utf-8")
            elif decision is not None and decision.kind == "signup_limit":
                body = request_body()
                address = body.get("email_address") if isinstance(body, dict) else None
                raise signup_limit_error(str(address or subpath.rstrip("/").rsplit("/", 1)[-1]))
            elif decision is not None:
                if decision.status == 429:
                    with state.lock:
                        state.stats.too_many_requests_sent += 1
                raise injected_error(decision.status, faults.retry_after)
            params: dict[str, str] = {k: v for k, v in request.args.items()}
            base_url = request.host_url  # "http://host:port/" as the client saw it
            result = execute(state, request.method, subpath, params, request_body(), base_url)
            return _json_response(result)

    @api.route("/", defaults={"subpath": ""}, methods=_METHODS)
    @api.route("/<path:subpath>", methods=_METHODS)
    def endpoint(subpath: str) -> Response:
        kind = route_kind(split_path(subpath))
        with state.lock:
            state.stats.requests_by_method[request.method] += 1
            state.stats.requests_by_kind[kind] += 1
        try:
            response = call(subpath)
        except ApiError as error:
            response = problem_response(error)
        with state.lock:
            label = "dropped" if g.get("sandbox_dropped") else str(response.status_code)
            state.stats.responses_by_status[label] += 1
        return response

    return api
