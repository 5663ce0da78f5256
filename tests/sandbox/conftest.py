"""Fixtures for the sandbox's own tests: a real server plus both Mailchimp clients."""

from __future__ import annotations

from typing import Any, Protocol

import mailchimp_marketing
import pytest
import requests
from mailchimp3 import MailChimp

# Imported rather than listed in pytest_plugins: the package also registers the module
# through its pytest11 entry point, and registering it twice would be an error.
from flask_mcsync.sandbox.pytest_plugin import (  # noqa: F401
    mailchimp_sandbox,
    mailchimp_sandbox_server,
)
from flask_mcsync.sandbox.server import SandboxServer

TIMEOUT = 10.0


@pytest.fixture
def sandbox(mailchimp_sandbox: SandboxServer) -> SandboxServer:  # noqa: F811
    return mailchimp_sandbox


@pytest.fixture
def mc3(sandbox: SandboxServer) -> MailChimp:
    client = MailChimp(mc_api=sandbox.api_key, timeout=TIMEOUT)
    client.base_url = sandbox.api_url  # trailing slash: mailchimp3 urljoins onto it
    return client


@pytest.fixture
def official(sandbox: SandboxServer) -> Any:
    client = mailchimp_marketing.Client()
    client.set_config({"api_key": sandbox.api_key, "timeout": TIMEOUT})
    client.api_client.host = sandbox.api_url.rstrip("/")
    return client


class Api(Protocol):
    def __call__(
        self, method: str, path: str, key: str | None = ..., **kw: Any
    ) -> requests.Response: ...


@pytest.fixture
def api(sandbox: SandboxServer) -> Api:
    """Raw requests to the sandbox's /3.0 API, authenticated with the default key."""

    def call(
        method: str, path: str, key: str | None = sandbox.api_key, **kw: Any
    ) -> requests.Response:
        kw.setdefault("timeout", TIMEOUT)
        auth = None if key is None else ("anyuser", key)
        return requests.request(method, sandbox.api_url + path.lstrip("/"), auth=auth, **kw)

    return call


@pytest.fixture
def postal_address() -> dict[str, str]:
    """A complete value for an address merge field: every key of
    ``sandbox.merge_values.ADDRESS_REQUIRED``, and a country."""
    return {
        "addr1": "1 Main St",
        "city": "Lyon",
        "state": "ARA",
        "zip": "69001",
        "country": "FR",
    }
