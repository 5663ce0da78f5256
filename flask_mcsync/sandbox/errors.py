"""Mailchimp-style API errors (RFC 7807 problem documents) for the sandbox."""

from __future__ import annotations

import uuid
from typing import Any

ERROR_TYPE = "https://mailchimp.com/developer/marketing/docs/errors/"
PROBLEM_CONTENT_TYPE = "application/problem+json; charset=utf-8"

NOT_FOUND_DETAIL = "The requested resource could not be found."
TOO_MANY_CONNECTIONS = "You have exceeded the limit of 10 simultaneous connections."
SCHEMA_DETAIL = (
    "The resource submitted could not be validated. For field-specific details, "
    "see the 'errors' array."
)


class ApiError(Exception):
    """An error the emulated API answers with; rendered as problem+json."""

    def __init__(
        self,
        status: int,
        title: str,
        detail: str,
        errors: list[dict[str, str]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(f"{status} {title}: {detail}")
        self.status = status
        self.title = title
        self.detail = detail
        self.errors = errors
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return problem(self.status, self.title, self.detail, self.errors)


def problem(
    status: int, title: str, detail: str, errors: list[dict[str, str]] | None = None
) -> dict[str, Any]:
    """Build the JSON body Mailchimp sends with every error."""
    body: dict[str, Any] = {
        "type": ERROR_TYPE,
        "title": title,
        "status": status,
        "detail": detail,
        # Mailchimp gives each error a fresh id that support can look up.
        "instance": str(uuid.uuid4()),
    }
    if errors is not None:
        body["errors"] = errors
    return body


def json_type_name(value: object) -> str:
    """The JSON type of a value, spelled as Mailchimp's schema messages spell it."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def not_found() -> ApiError:
    return ApiError(404, "Resource Not Found", NOT_FOUND_DETAIL)


def invalid_resource(detail: str, errors: list[dict[str, str]] | None = None) -> ApiError:
    return ApiError(400, "Invalid Resource", detail, errors)


def schema_error(field: str, message: str) -> ApiError:
    """A body that does not match the schema (missing or ill-typed field)."""
    return invalid_resource(SCHEMA_DETAIL, [{"field": field, "message": message}])


def method_not_allowed(allowed: list[str]) -> ApiError:
    return ApiError(
        405,
        "Method Not Allowed",
        "The requested method and resource are not compatible. See the Allow header for "
        "this resource's available methods.",
        headers={"Allow": ", ".join(allowed)},
    )


def too_many_requests(detail: str, retry_after: float) -> ApiError:
    return ApiError(
        429,
        "Too Many Requests",
        detail,
        # Retry-After is whole seconds on the wire; never advertise 0 for a real limit.
        headers={"Retry-After": str(max(1, round(retry_after)))},
    )
