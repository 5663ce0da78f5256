"""What the sandbox's API tests build and read alike, with either client."""

from __future__ import annotations

import json
from typing import Any

import pytest
from mailchimp_marketing.api_client import ApiClientError


def put_body(email: str, **extra: Any) -> dict[str, Any]:
    """The body of a member upsert, as our gateway sends it."""
    return {"email_address": email, "status_if_new": "subscribed", **extra}


def official_error(exc: pytest.ExceptionInfo[ApiClientError]) -> dict[str, Any]:
    """The problem document of an error the official client raised.

    problem+json is not "application/json" to the official client: it keeps the text.
    """
    body: dict[str, Any] = json.loads(exc.value.text)
    return body
