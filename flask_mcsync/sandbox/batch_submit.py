"""``POST /batches`` checks and ``GET /batches`` paging.

Mailchimp validates the whole submission against its schema: every operation needs a
``method`` among GET/POST/PUT/PATCH/DELETE, a ``path`` (relative to /3.0, without it),
a ``body`` that is a JSON *string* and ``params`` that are an object. One malformed
operation refuses the whole batch with 400 "Invalid Resource" and an ``errors`` array
("operations.item:N.field"), before anything runs.
"""

from __future__ import annotations

from typing import Any

from .errors import SCHEMA_DETAIL, invalid_resource, json_type_name
from .state import SandboxState

METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")


def _operation_errors(index: int, op: object) -> list[dict[str, str]]:
    where = f"operations.item:{index}"
    if not isinstance(op, dict):
        return [
            {
                "field": where,
                "message": f"Schema describes object, {json_type_name(op)} found instead",
            }
        ]
    errors: list[dict[str, str]] = []
    method, path = op.get("method"), op.get("path")
    if method not in METHODS:
        errors.append(
            {
                "field": f"{where}.method",
                "message": "Data does not match any of the enum values: "
                + ", ".join(METHODS)
                + ".",
            }
        )
    if not isinstance(path, str) or not path.strip():
        errors.append(
            {
                "field": f"{where}.path",
                "message": f"Schema describes string, {json_type_name(path)} found instead",
            }
        )
    elif path.lstrip("/").split("/", 1)[0] == "3.0":
        errors.append(
            {
                "field": f"{where}.path",
                "message": "The path is relative to the API root: leave out /3.0.",
            }
        )
    for name, wanted in (("body", str), ("params", dict)):
        value = op.get(name)
        if value is not None and not isinstance(value, wanted):
            kind = "string" if wanted is str else "object"
            errors.append(
                {
                    "field": f"{where}.{name}",
                    "message": f"Schema describes {kind}, {json_type_name(value)} found instead",
                }
            )
    return errors


def validate_operations(body: object) -> list[dict[str, Any]]:
    """The submission's operations, or the 400 Mailchimp answers for the whole batch."""
    operations = body.get("operations") if isinstance(body, dict) else None
    if not isinstance(operations, list):
        raise invalid_resource(
            SCHEMA_DETAIL,
            [{"field": "operations", "message": "Required fields were not provided: operations"}],
        )
    errors = [e for i, op in enumerate(operations) for e in _operation_errors(i, op)]
    if errors:
        raise invalid_resource(SCHEMA_DETAIL, errors)
    return operations


def batch_page(state: SandboxState, offset: int, count: int) -> dict[str, Any]:
    batches = list(state.batches.values())
    return {
        "batches": [b.to_json() for b in batches[offset : offset + count]],
        "total_items": len(batches),
        "_links": [],
    }
